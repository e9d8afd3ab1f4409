"""Ordinary vs unbalanced, run by run and pair by pair: the numbers behind every verdict.

Runs are paired as (ordinary, unbalanced) when they share method and loss and have init
``random`` vs ``vae`` (`pair_runs`). For every pair `compare_pair` states, with numbers, whether
the unbalanced run has a lower FID at the first ``early_checkpoints`` common checkpoint steps
(paper Fig. 4/5), whether its D and G loss standard deviations are lower (paper Fig. 3), and how
many steps the ordinary run needs to reach the FID the unbalanced run has at its first
checkpoint; `verdict_line` says it in one sentence. Per run: `final_numbers`, `best_fid` and
`floor_numbers`. The claims across seeds are aggregated from these pairs in
`ugan.reporting.claims`. Nothing here reads or writes a file.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ugan.evaluation.stability import window_std
from ugan.reporting.formatting import finite, fmt
from ugan.reporting.inputs import LoadedRun, RunInfo, to_float

ORDINARY_INIT = "random"
UNBALANCED_INIT = "vae"


def role(init: str) -> str:
    """ "ordinary" / "unbalanced" for the two inits that are paired; other inits as they are."""
    return {ORDINARY_INIT: "ordinary", UNBALANCED_INIT: "unbalanced"}.get(init, init)


def pair_runs(runs: list[RunInfo]) -> list[tuple[RunInfo, RunInfo]]:
    """(ordinary, unbalanced) pairs: same method and loss, init "random" vs "vae".

    Within one (method, loss) group a run is used at most once. When a group holds several
    runs of an init, keys that agree once the words "unbalanced"/"vae" are removed are paired
    first (``dcgan-s1`` with ``dcgan-unbalanced-s1``), the rest in key order. Pairs come in
    the order of their ordinary run in `runs`.
    """
    pairs: list[tuple[RunInfo, RunInfo]] = []
    groups: dict[tuple[str, str], list[RunInfo]] = {}
    for run in runs:
        groups.setdefault((run.method, run.loss), []).append(run)
    for group in groups.values():
        ordinary = [r for r in group if r.init == ORDINARY_INIT]
        unbalanced = [r for r in group if r.init == UNBALANCED_INIT]
        matched: dict[str, RunInfo] = {}
        free = list(unbalanced)
        for o in ordinary:
            for u in free:
                if _stem(u.key) == _stem(o.key):
                    matched[o.key] = u
                    free.remove(u)
                    break
        rest_o = sorted((o for o in ordinary if o.key not in matched), key=lambda r: r.key)
        for o, u in zip(rest_o, sorted(free, key=lambda r: r.key), strict=False):
            matched[o.key] = u
        pairs.extend((o, matched[o.key]) for o in ordinary if o.key in matched)
    order = {r.key: i for i, r in enumerate(runs)}
    pairs.sort(key=lambda p: order[p[0].key])
    return pairs


def _stem(key: str) -> str:
    parts = [p for p in re.split(r"[-_.]", key.lower()) if p not in ("unbalanced", "vae")]
    return "-".join(parts)


def _mean(values: list[float]) -> float:
    values = [v for v in values if finite(v)]
    return float(np.mean(values)) if values else math.nan


def final_numbers(run: LoadedRun) -> dict[str, float]:
    """Final-checkpoint numbers: metrics.json's "final" where given, else the last CSV row."""
    recorded = run.metrics.get("final") or {}
    out: dict[str, float] = {}
    last = len(run.fid_steps) - 1
    from_csv = {
        "step": run.fid_steps[last] if last >= 0 else math.nan,
        "fid": run.fid[last] if last >= 0 else math.nan,
        "isc_mean": run.isc_mean[last] if last >= 0 else math.nan,
        "kid_mean": run.kid_mean[last] if last >= 0 else math.nan,
    }
    for name, fallback in from_csv.items():
        value = recorded.get(name)
        out[name] = float(value) if finite(value) else float(fallback)
    if finite(out["step"]):
        out["step"] = int(out["step"])  # type: ignore[assignment]
    return out


def best_fid(run: LoadedRun) -> tuple[float, int | None]:
    """(best FID, the checkpoint step of the lowest FID in fidelity.csv); metrics.json's
    "best_fid" wins over the CSV minimum when recorded."""
    finite_fid = np.isfinite(run.fid)
    step = (
        int(run.fid_steps[finite_fid][np.argmin(run.fid[finite_fid])]) if finite_fid.any() else None
    )
    recorded = run.metrics.get("best_fid")
    if finite(recorded):
        return float(recorded), step
    return (float(np.min(run.fid[finite_fid])) if finite_fid.any() else math.nan), step


def isc_unavailable(run: LoadedRun) -> str | None:
    """Why the run has no Inception Score (info.json's `inception_score.reason`: a feature
    network trained without class labels), or None when it has one."""
    recorded = run.about.get("inception_score") or {}
    if recorded.get("available", True):
        return None
    return str(recorded.get("reason") or "not computed")


def floor_numbers(run: LoadedRun) -> dict[str, float]:
    """What real data scores (held-out vs train), from metrics.json's "floor"; NaN if absent."""
    floor = run.metrics.get("floor") or {}
    return {k: to_float(floor.get(k)) for k in ("fid", "isc_mean", "kid_mean")}


def compare_pair(
    ordinary: LoadedRun, unbalanced: LoadedRun, early_checkpoints: int
) -> dict[str, Any]:
    """The numbers of one (ordinary, unbalanced) pair, as report.json's "pairs" entries."""
    common = sorted(set(ordinary.finite_fid_steps()) & set(unbalanced.finite_fid_steps()))
    early = common[: max(0, early_checkpoints)]
    fid_o = [ordinary.fid_at(s) for s in early]
    fid_u = [unbalanced.fid_at(s) for s in early]
    is_o = [ordinary.isc_at(s) for s in early]
    is_u = [unbalanced.isc_at(s) for s in early]
    wins = sum(1 for o, u in zip(fid_o, fid_u, strict=True) if u < o)
    n = len(early)
    beats = n > 0 and 2 * wins > n
    so, su = ordinary.loss_stats, unbalanced.loss_stats
    d_lower = bool(finite(su["d_loss_std"]) and finite(so["d_loss_std"])) and bool(
        su["d_loss_std"] < so["d_loss_std"]
    )
    g_lower = bool(finite(su["g_loss_std"]) and finite(so["g_loss_std"])) and bool(
        su["g_loss_std"] < so["g_loss_std"]
    )
    # Convergence: first step where the ordinary run reaches the unbalanced run's first FID.
    u_steps = unbalanced.finite_fid_steps()
    target_step = u_steps[0] if u_steps else None
    target = unbalanced.fid_at(target_step) if target_step is not None else math.nan
    steps_to_match: int | None = None
    if target_step is not None:
        for s in ordinary.finite_fid_steps():
            if ordinary.fid_at(s) <= target:
                steps_to_match = s
                break
    ratio = (
        steps_to_match / target_step
        if steps_to_match is not None and target_step is not None and target_step > 0
        else None
    )
    o_steps = ordinary.finite_fid_steps()
    # Oscillation of D's loss within checkpoint intervals (one losses.csv row per step)
    window = common[1] - common[0] if len(common) > 1 else max(len(ordinary.d_loss), 2)
    return {
        "ordinary": ordinary.key,
        "unbalanced": unbalanced.key,
        "method": ordinary.info.method,
        "loss": ordinary.info.loss,
        "early_steps": early,
        "early_fid_ordinary": fid_o,
        "early_fid_unbalanced": fid_u,
        "early_fid_difference": [u - o for o, u in zip(fid_o, fid_u, strict=True)],
        "early_is_ordinary": is_o,
        "early_is_unbalanced": is_u,
        "isc_unavailable": isc_unavailable(ordinary) or isc_unavailable(unbalanced),
        "mean_early_fid_ordinary": _mean(fid_o),
        "mean_early_fid_unbalanced": _mean(fid_u),
        "unbalanced_wins_early": wins,
        "early_checkpoints": n,
        "unbalanced_beats_early": beats,
        "d_loss_std": {"ordinary": so["d_loss_std"], "unbalanced": su["d_loss_std"]},
        "g_loss_std": {"ordinary": so["g_loss_std"], "unbalanced": su["g_loss_std"]},
        "d_loss_window_std": {
            "ordinary": window_std(ordinary.d_loss, window),
            "unbalanced": window_std(unbalanced.d_loss, window),
        },
        "loss_window": window,
        "d_loss_std_lower": d_lower,
        "g_loss_std_lower": g_lower,
        "match_target_step": target_step,
        "match_target_fid": target,
        "ordinary_last_step": o_steps[-1] if o_steps else None,
        "steps_to_match": steps_to_match,
        "convergence_ratio": ratio,
    }


def verdict_line(cmp: dict[str, Any]) -> str:
    """One sentence on the early checkpoints of a `compare_pair` result, with its numbers."""
    n, wins = cmp["early_checkpoints"], cmp["unbalanced_wins_early"]
    if cmp.get("fid_singular"):  # set by build_report (ugan.reporting.scoring)
        return f"FID is not compared: {cmp['fid_singular']}."
    if n == 0:
        return (
            "No common checkpoint with a FID for both runs: the early checkpoints cannot be "
            "compared."
        )
    means = (
        f"(mean FID {fmt(cmp['mean_early_fid_unbalanced'], 1)} vs "
        f"{fmt(cmp['mean_early_fid_ordinary'], 1)})"
    )
    if cmp["unbalanced_beats_early"]:
        return f"Unbalanced beats ordinary at {wins} of {n} early checkpoints {means}."
    return (
        f"Unbalanced does not beat ordinary at the early checkpoints: lower FID at only "
        f"{wins} of {n} {means}."
    )
