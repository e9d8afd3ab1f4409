"""The report: tables, figures and verdicts comparing ordinary and Unbalanced GANs.

Reads, for every run key R, what the earlier stages wrote:

* ``runs/R/losses.csv`` (``step,d_loss,g_loss[,...]``, one row per training step),
* ``runs/R/samples/step_NNNNNN.png`` (sample grids at a fixed z),
* ``evaluation/R/fidelity.csv`` (``step,fid,isc_mean,isc_std,kid_mean,kid_std``),
* ``evaluation/R/metrics.json`` (init / loss / method, final numbers, loss stats, floor),

and writes into one folder ``report.md``, ``fid.png``, ``is.png``, ``losses.png``,
``samples.png`` and ``summary.json``, every file atomically.

Runs are paired as (ordinary, unbalanced) when they share method and loss and have init
``random`` vs ``vae``. For every pair the report states, with numbers, whether the unbalanced
run has a lower FID at the first ``early_checkpoints`` common checkpoint steps (paper Fig. 4/5),
whether its D and G loss standard deviations are lower (paper Fig. 3), and how many steps the
ordinary run needs to reach the FID the unbalanced run has at its first checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from ugan.core.errors import InputError, InputMissingError
from ugan.core.io import atomic_path, atomic_write_json, atomic_write_text
from ugan.core.markdown import md_table
from ugan.methods.catalog import combinations_markdown
from ugan.reporting.claims import claims_cells, claims_table

ORDINARY_INIT = "random"
UNBALANCED_INIT = "vae"
DPI = 110
SAMPLE_RE = re.compile(r"^step_(\d+)\.png$")
FIGURES = {"fid": "fid.png", "is": "is.png", "losses": "losses.png", "samples": "samples.png"}

# One hue family per (method, loss) group: (ordinary shade, unbalanced shade).
_FAMILIES = [
    ("#6baed6", "#08519c"),  # blue
    ("#fd8d3c", "#a63603"),  # orange
    ("#74c476", "#00692c"),  # green
    ("#b4a7d6", "#54278f"),  # purple
    ("#f768a1", "#ae017e"),  # magenta
    ("#bdbdbd", "#252525"),  # grey
]
_DASH = "—"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    key: str
    init: str
    loss: str
    method: str
    losses_csv: Path
    samples_dir: Path
    fidelity_csv: Path
    metrics_json: Path


def load_run(key: str, runs_dir: Path, eval_dir: Path) -> RunInfo:
    """Locate the inputs of run `key` and read its init / loss / method from metrics.json.

    Raises FileNotFoundError naming the missing file when metrics.json, losses.csv or
    fidelity.csv is absent. A missing samples folder is allowed (the sample figure then shows
    an empty cell for that run).
    """
    runs_dir, eval_dir = Path(runs_dir), Path(eval_dir)
    losses_csv = runs_dir / key / "losses.csv"
    samples_dir = runs_dir / key / "samples"
    fidelity_csv = eval_dir / key / "fidelity.csv"
    metrics_json = eval_dir / key / "metrics.json"
    for path in (metrics_json, losses_csv, fidelity_csv):
        if not path.is_file():
            raise InputMissingError(f"run {key!r}: missing input file {path}")
    metrics = _read_json(metrics_json)
    missing = [name for name in ("init", "loss", "method") if name not in metrics]
    if missing:
        raise InputError(f"{metrics_json}: missing field(s) {missing}")
    if "run" in metrics and str(metrics["run"]) != key:
        raise InputError(f"{metrics_json} describes run {metrics['run']!r}, expected {key!r}")
    return RunInfo(
        key=key,
        init=str(metrics["init"]),
        loss=str(metrics["loss"]),
        method=str(metrics["method"]),
        losses_csv=losses_csv,
        samples_dir=samples_dir,
        fidelity_csv=fidelity_csv,
        metrics_json=metrics_json,
    )


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


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        obj = json.load(handle)
    if not isinstance(obj, dict):
        raise TypeError(f"{path} holds {type(obj).__name__}, expected an object")
    return obj


def _to_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Columns `required` of a CSV as float arrays, sorted by step, last row per step kept."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path} is empty (no header)")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; header is {header}")
        index = {c: header.index(c) for c in required}
        cols: dict[str, list[float]] = {c: [] for c in required}
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            for c, i in index.items():
                cols[c].append(_to_float(row[i]) if i < len(row) else math.nan)
    out = {c: np.asarray(v, dtype=float) for c, v in cols.items()}
    steps = out["step"]
    keep = np.isfinite(steps)
    out = {c: v[keep] for c, v in out.items()}
    # Sort by step; on duplicate steps (a resumed run) keep the last row written.
    order = np.argsort(out["step"], kind="stable")
    out = {c: v[order] for c, v in out.items()}
    steps = out["step"]
    if len(steps):
        last = np.ones(len(steps), dtype=bool)
        last[:-1] = steps[1:] != steps[:-1]
        out = {c: v[last] for c, v in out.items()}
    return out


@dataclass
class _Run:
    info: RunInfo
    metrics: dict
    fid_steps: np.ndarray
    fid: np.ndarray
    isc_mean: np.ndarray
    isc_std: np.ndarray
    kid_mean: np.ndarray
    kid_std: np.ndarray
    loss_steps: np.ndarray
    d_loss: np.ndarray
    g_loss: np.ndarray
    loss_stats: dict[str, float]
    samples: dict[int, Path] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.info.key

    def fid_at(self, step: int) -> float:
        hit = np.nonzero(self.fid_steps == step)[0]
        return float(self.fid[hit[-1]]) if len(hit) else math.nan

    def isc_at(self, step: int) -> float:
        hit = np.nonzero(self.fid_steps == step)[0]
        return float(self.isc_mean[hit[-1]]) if len(hit) else math.nan

    def finite_fid_steps(self) -> list[int]:
        return [int(s) for s, f in zip(self.fid_steps, self.fid, strict=True) if math.isfinite(f)]


def _load(info: RunInfo) -> _Run:
    for path in (info.metrics_json, info.losses_csv, info.fidelity_csv):
        if not Path(path).is_file():
            raise InputMissingError(f"run {info.key!r}: missing input file {path}")
    metrics = _read_json(Path(info.metrics_json))
    fidelity = _read_csv(
        Path(info.fidelity_csv), ("step", "fid", "isc_mean", "isc_std", "kid_mean", "kid_std")
    )
    losses = _read_csv(Path(info.losses_csv), ("step", "d_loss", "g_loss"))
    stats: dict[str, float] = {}
    recorded = metrics.get("losses") or {}
    names = ("d_loss_mean", "d_loss_std", "g_loss_mean", "g_loss_std")
    if all(math.isfinite(_to_float(recorded.get(n))) for n in names):
        stats = {n: float(recorded[n]) for n in names}
        stats["source"] = "metrics.json"  # type: ignore[assignment]
    else:
        for which in ("d_loss", "g_loss"):
            values = losses[which][np.isfinite(losses[which])]
            stats[f"{which}_mean"] = float(values.mean()) if len(values) else math.nan
            stats[f"{which}_std"] = float(values.std()) if len(values) else math.nan
        stats["source"] = "losses.csv"  # type: ignore[assignment]
    samples: dict[int, Path] = {}
    samples_dir = Path(info.samples_dir)
    if samples_dir.is_dir():
        for path in samples_dir.iterdir():
            match = SAMPLE_RE.match(path.name)
            if match and path.is_file():
                samples[int(match.group(1))] = path
    return _Run(
        info=info,
        metrics=metrics,
        fid_steps=fidelity["step"].astype(np.int64),
        fid=fidelity["fid"],
        isc_mean=fidelity["isc_mean"],
        isc_std=fidelity["isc_std"],
        kid_mean=fidelity["kid_mean"],
        kid_std=fidelity["kid_std"],
        loss_steps=losses["step"],
        d_loss=losses["d_loss"],
        g_loss=losses["g_loss"],
        loss_stats=stats,
        samples=dict(sorted(samples.items())),
    )


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _fmt(x: Any, decimals: int) -> str:
    return f"{float(x):.{decimals}f}" if _finite(x) else _DASH


def _fmt_pm(mean: Any, std: Any, decimals: int) -> str:
    if not _finite(mean):
        return _DASH
    if not _finite(std):
        return _fmt(mean, decimals)
    return f"{float(mean):.{decimals}f} ± {float(std):.{decimals}f}"


def _fmt_step(step: Any) -> str:
    return f"{int(step):,}"


def _mean(values: list[float]) -> float:
    values = [v for v in values if _finite(v)]
    return float(np.mean(values)) if values else math.nan


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN / inf to None, Paths to str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _final(run: _Run) -> dict[str, float]:
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
        out[name] = float(value) if _finite(value) else float(fallback)
    if _finite(out["step"]):
        out["step"] = int(out["step"])  # type: ignore[assignment]
    return out


def _best(run: _Run) -> tuple[float, int | None]:
    finite = np.isfinite(run.fid)
    step = int(run.fid_steps[finite][np.argmin(run.fid[finite])]) if finite.any() else None
    recorded = run.metrics.get("best_fid")
    if _finite(recorded):
        return float(recorded), step
    return (float(np.min(run.fid[finite])) if finite.any() else math.nan), step


def _floor(run: _Run) -> dict[str, float]:
    floor = run.metrics.get("floor") or {}
    return {k: _to_float(floor.get(k)) for k in ("fid", "isc_mean", "kid_mean")}


def _compare(ordinary: _Run, unbalanced: _Run, early_checkpoints: int) -> dict[str, Any]:
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
    d_lower = bool(_finite(su["d_loss_std"]) and _finite(so["d_loss_std"])) and bool(
        su["d_loss_std"] < so["d_loss_std"]
    )
    g_lower = bool(_finite(su["g_loss_std"]) and _finite(so["g_loss_std"])) and bool(
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
        "mean_early_fid_ordinary": _mean(fid_o),
        "mean_early_fid_unbalanced": _mean(fid_u),
        "unbalanced_wins_early": wins,
        "early_checkpoints": n,
        "unbalanced_beats_early": beats,
        "d_loss_std": {"ordinary": so["d_loss_std"], "unbalanced": su["d_loss_std"]},
        "g_loss_std": {"ordinary": so["g_loss_std"], "unbalanced": su["g_loss_std"]},
        "d_loss_std_lower": d_lower,
        "g_loss_std_lower": g_lower,
        "match_target_step": target_step,
        "match_target_fid": target,
        "ordinary_last_step": o_steps[-1] if o_steps else None,
        "steps_to_match": steps_to_match,
        "convergence_ratio": ratio,
    }


def _verdict_line(cmp: dict[str, Any]) -> str:
    n, wins = cmp["early_checkpoints"], cmp["unbalanced_wins_early"]
    if n == 0:
        return (
            "No common checkpoint with a FID for both runs: the early checkpoints cannot be "
            "compared."
        )
    means = (
        f"(mean FID {_fmt(cmp['mean_early_fid_unbalanced'], 1)} vs "
        f"{_fmt(cmp['mean_early_fid_ordinary'], 1)})"
    )
    if cmp["unbalanced_beats_early"]:
        return f"Unbalanced beats ordinary at {wins} of {n} early checkpoints {means}."
    return (
        f"Unbalanced does not beat ordinary at the early checkpoints: lower FID at only "
        f"{wins} of {n} {means}."
    )


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _metric_table(runs: list[_Run], cell) -> str:
    steps = sorted({int(s) for r in runs for s in r.fid_steps})
    rows = []
    for step in steps:
        row = [_fmt_step(step)]
        for run in runs:
            hit = np.nonzero(run.fid_steps == step)[0]
            row.append(cell(run, hit[-1]) if len(hit) else _DASH)
        rows.append(row)
    if not rows:
        return "_No checkpoint was evaluated._"
    return md_table(["step", *(r.key for r in runs)], rows, "r" * (len(runs) + 1))


def _role(init: str) -> str:
    return {ORDINARY_INIT: "ordinary", UNBALANCED_INIT: "unbalanced"}.get(init, init)


def _pair_section(cmp: dict[str, Any]) -> list[str]:
    o, u = cmp["ordinary"], cmp["unbalanced"]
    lines = [
        (
            f"### `{u}` (unbalanced) vs `{o}` (ordinary) — method {cmp['method']}, "
            f"loss {cmp['loss']}"
        ),
        "",
        f"**Verdict: {_verdict_line(cmp)}**",
        "",
    ]
    if cmp["early_checkpoints"]:
        rows = []
        for s, fo, fu in zip(
            cmp["early_steps"], cmp["early_fid_ordinary"], cmp["early_fid_unbalanced"], strict=True
        ):
            diff = fu - fo
            rows.append(
                [
                    _fmt_step(s),
                    _fmt(fo, 1),
                    _fmt(fu, 1),
                    f"{diff:+.1f}" if _finite(diff) else _DASH,
                    "unbalanced" if fu < fo else "ordinary" if fo < fu else "tie",
                ]
            )
        lines += [
            (
                f"FID at the first {cmp['early_checkpoints']} common checkpoint(s) "
                "(Δ = unbalanced − ordinary; negative favours unbalanced):"
            ),
            "",
            md_table(["step", f"FID {o}", f"FID {u}", "Δ", "lower FID"], rows, "rrrrl"),
            "",
        ]

    def std_line(which: str, label: str) -> str:
        std = cmp[f"{which}_std"]
        lower = cmp[f"{which}_std_lower"]
        ratio = (
            f", {std['unbalanced'] / std['ordinary']:.2f}× the ordinary std"
            if _finite(std["unbalanced"]) and _finite(std["ordinary"]) and std["ordinary"] > 0
            else ""
        )
        word = "lower" if lower else "not lower"
        return (
            f"- {label} loss std: {_fmt(std['unbalanced'], 4)} (unbalanced) vs "
            f"{_fmt(std['ordinary'], 4)} (ordinary) → **{word}**{ratio}."
        )

    lines += [
        "Loss stability (paper Fig. 3):",
        "",
        std_line("d_loss", "D"),
        std_line("g_loss", "G"),
        "",
    ]
    target_step = cmp["match_target_step"]
    if target_step is None:
        conv = "the unbalanced run has no checkpoint with a FID, so convergence is not measured."
    else:
        head = (
            f"the unbalanced run has FID {_fmt(cmp['match_target_fid'], 1)} at its first "
            f"checkpoint (step {_fmt_step(target_step)}); "
        )
        if cmp["steps_to_match"] is None:
            last = cmp["ordinary_last_step"]
            within = f"within {_fmt_step(last)} steps" if last is not None else "(no checkpoints)"
            conv = head + f"the ordinary run never reaches it {within}."
        else:
            conv = head + (
                f"the ordinary run first reaches it at step {_fmt_step(cmp['steps_to_match'])}"
            )
            ratio = cmp["convergence_ratio"]
            if ratio is None:
                conv += " (ratio undefined: the unbalanced checkpoint is at step 0)."
            elif ratio > 1:
                conv += f" — **{ratio:.1f}×** as many steps."
            elif ratio == 1:
                conv += " — the same checkpoint (1.0×): no speed-up."
            else:
                conv += f" — {ratio:.2f}× the steps: the ordinary run is faster."
    lines += [f"Convergence: {conv}", ""]
    return lines


def _render_markdown(
    runs: list[_Run],
    comparisons: list[dict[str, Any]],
    unpaired: list[str],
    early_checkpoints: int,
    smoothing: int,
) -> str:
    out: list[str] = ["# Unbalanced GANs vs ordinary GANs — report", ""]
    out += [
        (
            "Ordinary = generator from random init; unbalanced = generator initialised from "
            "the pre-trained VAE decoder (Ham, Jun & Kim 2020)."
        ),
        "",
        "## Verdicts at a glance",
        "",
    ]
    if comparisons:
        for cmp in comparisons:
            std = (
                "lower"
                if cmp["d_loss_std_lower"] and cmp["g_loss_std_lower"]
                else "lower for D only"
                if cmp["d_loss_std_lower"]
                else "lower for G only"
                if cmp["g_loss_std_lower"]
                else "not lower"
            )
            out.append(
                f"- `{cmp['unbalanced']}` vs `{cmp['ordinary']}`: {_verdict_line(cmp)} "
                f"Loss std {std}."
            )
    else:
        out.append(
            "No (ordinary, unbalanced) pair among these runs (a pair needs the same method and "
            "loss with init random vs vae), so no verdict is given."
        )
    if unpaired:
        out.append(f"- Runs without a pair: {', '.join(f'`{k}`' for k in unpaired)}.")
    out.append("")

    rows = []
    for run in runs:
        last_loss = int(run.loss_steps[-1]) if len(run.loss_steps) else None
        rows.append(
            [
                run.key,
                run.info.method,
                run.info.loss,
                f"{run.info.init} ({_role(run.info.init)})",
                _fmt_step(last_loss) if last_loss is not None else _DASH,
                str(len(run.fid_steps)),
                str(len(run.samples)),
            ]
        )
    out += [
        "## Runs",
        "",
        md_table(
            ["run", "method", "loss", "init", "last step", "checkpoints", "sample grids"],
            rows,
            "llllrrr",
        ),
        "",
    ]

    rows = []
    for run in runs:
        final = _final(run)
        best, best_step = _best(run)
        rows.append(
            [
                run.key,
                _fmt_step(final["step"]) if _finite(final["step"]) else _DASH,
                _fmt(final["fid"], 1),
                _fmt(best, 1) + (f" @ {_fmt_step(best_step)}" if best_step is not None else ""),
                _fmt(final["isc_mean"], 2),
                _fmt(final["kid_mean"], 4),
            ]
        )
    out += [
        "## Final numbers",
        "",
        md_table(
            ["run", "final step", "FID ↓", "best FID ↓ @ step", "IS ↑", "KID ↓"], rows, "lrrrrr"
        ),
        "",
    ]

    floors = [(_floor(r), r.key) for r in runs]
    distinct = {tuple(round(v, 9) if _finite(v) else None for v in f.values()) for f, _ in floors}
    if len(distinct) == 1:
        f = floors[0][0]
        rows = [["all runs", _fmt(f["fid"], 1), _fmt(f["isc_mean"], 2), _fmt(f["kid_mean"], 4)]]
    else:
        rows = [
            [k, _fmt(f["fid"], 1), _fmt(f["isc_mean"], 2), _fmt(f["kid_mean"], 4)]
            for f, k in floors
        ]
    out += [
        "## Floor (held-out vs train)",
        "",
        (
            "What real data scores: FID / KID of the held-out split against the train split, "
            "IS of the held-out split. No generator should be expected to beat it."
        ),
        "",
        md_table(["", "FID", "IS", "KID"], rows, "lrrr"),
        "",
    ]

    out += [
        "## FID at each checkpoint (lower is better)",
        "",
        _metric_table(runs, lambda r, i: _fmt(r.fid[i], 1)),
        "",
        f"![FID vs training step]({FIGURES['fid']})",
        "",
        "## Inception Score at each checkpoint (higher is better; mean ± std over splits)",
        "",
        _metric_table(runs, lambda r, i: _fmt_pm(r.isc_mean[i], r.isc_std[i], 2)),
        "",
        f"![Inception Score vs training step]({FIGURES['is']})",
        "",
        "## KID at each checkpoint (lower is better; mean ± std over subsets)",
        "",
        _metric_table(runs, lambda r, i: _fmt_pm(r.kid_mean[i], r.kid_std[i], 4)),
        "",
    ]

    rows = []
    for run in runs:
        s = run.loss_stats
        rows.append(
            [
                run.key,
                _role(run.info.init),
                _fmt_pm(s["d_loss_mean"], s["d_loss_std"], 4),
                _fmt_pm(s["g_loss_mean"], s["g_loss_std"], 4),
            ]
        )
    out += [
        "## Loss stability (paper Fig. 3: mean ± std of each loss over training)",
        "",
        md_table(["run", "init", "D loss", "G loss"], rows, "llrr"),
        "",
        f"![Discriminator and generator losses]({FIGURES['losses']})",
        "",
        (
            f"Faint lines: the loss at every step; solid: moving average over {smoothing} steps."
            if smoothing > 1
            else "Lines: the loss at every step (no smoothing)."
        ),
        "",
        "## Samples over training (fixed z)",
        "",
        f"![Sample grids over training]({FIGURES['samples']})",
        "",
        f"## Verdicts (first {early_checkpoints} common checkpoints)",
        "",
    ]
    if comparisons:
        for cmp in comparisons:
            out += _pair_section(cmp)
    else:
        out += ["No (ordinary, unbalanced) pair among these runs: nothing to compare.", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _styles(runs: list[_Run]) -> dict[str, dict[str, Any]]:
    """Colour and line style per run: one hue per (method, loss); ordinary light and dashed,
    unbalanced dark and solid."""
    families: dict[tuple[str, str], int] = {}
    out = {}
    for run in runs:
        fam = families.setdefault((run.info.method, run.info.loss), len(families))
        light, dark = _FAMILIES[fam % len(_FAMILIES)]
        init = run.info.init
        out[run.key] = {
            "color": dark if init == UNBALANCED_INIT else light,
            "linestyle": "-" if init == UNBALANCED_INIT else "--" if init == ORDINARY_INIT else ":",
            "marker": "o" if init == UNBALANCED_INIT else "s",
        }
    return out


def _step_axis(ax) -> None:
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}")
    )
    ax.set_xlabel("training step")
    ax.grid(True, alpha=0.3, linewidth=0.6)


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _distinct_floor(runs: list[_Run], name: str) -> list[float]:
    values = sorted({round(_floor(r)[name], 9) for r in runs if _finite(_floor(r)[name])})
    return values


def _plot_fid(runs: list[_Run], styles: dict, path: Path) -> None:
    fig = Figure(figsize=(9.0, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    values = []
    for run in runs:
        keep = np.isfinite(run.fid)
        if not keep.any():
            continue
        st = styles[run.key]
        ax.plot(
            run.fid_steps[keep],
            run.fid[keep],
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
            markersize=3.5,
            linewidth=1.8,
            label=run.key,
        )
        values.extend(run.fid[keep].tolist())
    positive = [v for v in values if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 8
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))
    lo, hi = (min(values), max(values)) if values else (math.nan, math.nan)
    for i, floor in enumerate(_distinct_floor(runs, "fid")):
        label = f"floor (held-out vs train): {floor:.1f}" if i == 0 else None
        # A floor far below the curves would squash them: list it in the legend only.
        far = bool(values) and (floor < lo / 2.5 if log else floor < lo - 0.6 * (hi - lo))
        if far:
            if label:
                ax.plot([], [], color="0.35", linestyle=":", label=label + " (below the axis)")
        else:
            ax.axhline(floor, color="0.35", linestyle=":", linewidth=1.2, label=label)
            values.append(floor)
    _step_axis(ax)
    ax.set_ylabel("FID (lower is better)")
    ax.set_title("FID vs training step")
    if not values:
        ax.text(0.5, 0.5, "no FID values", ha="center", va="center", transform=ax.transAxes)
    else:
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    _save(fig, path)


def _plot_is(runs: list[_Run], styles: dict, path: Path) -> None:
    fig = Figure(figsize=(9.0, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    any_value = False
    for run in runs:
        keep = np.isfinite(run.isc_mean)
        if not keep.any():
            continue
        any_value = True
        st = styles[run.key]
        x, y = run.fid_steps[keep], run.isc_mean[keep]
        ax.plot(
            x,
            y,
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
            markersize=3.5,
            linewidth=1.8,
            label=run.key,
        )
        sd = np.where(np.isfinite(run.isc_std[keep]), run.isc_std[keep], 0.0)
        if (sd > 0).any():
            ax.fill_between(x, y - sd, y + sd, color=st["color"], alpha=0.15, linewidth=0)
    for i, floor in enumerate(_distinct_floor(runs, "isc_mean")):
        ax.axhline(
            floor,
            color="0.35",
            linestyle=":",
            linewidth=1.2,
            label=f"real held-out data: {floor:.2f}" if i == 0 else None,
        )
        any_value = True
    _step_axis(ax)
    ax.set_ylabel("Inception Score (higher is better)")
    ax.set_title("Inception Score vs training step (band: ± std over splits)")
    if not any_value:
        ax.text(0.5, 0.5, "no IS values", ha="center", va="center", transform=ax.transAxes)
    else:
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    _save(fig, path)


def _moving_average(y: np.ndarray, window: int) -> tuple[np.ndarray, int]:
    """NaN-aware centred moving average; returns the values and the offset of the first one."""
    window = max(1, min(int(window), len(y)))
    finite = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    total = csum[window:] - csum[:-window]
    count = ccount[window:] - ccount[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return avg, window // 2


def _groups(runs: list[_Run]) -> list[tuple[tuple[str, str], list[_Run]]]:
    groups: dict[tuple[str, str], list[_Run]] = {}
    for run in runs:
        groups.setdefault((run.info.method, run.info.loss), []).append(run)
    return list(groups.items())


def _loss_label(run: _Run, which: str) -> str:
    mean, std = run.loss_stats[f"{which}_mean"], run.loss_stats[f"{which}_std"]
    return f"{run.key}: {_fmt(mean, 4)} ± {_fmt(std, 4)}"


def _plot_losses(runs: list[_Run], styles: dict, path: Path, smoothing: int) -> None:
    groups = _groups(runs)
    fig = Figure(figsize=(11.0, 0.5 + 3.1 * len(groups)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for row, ((method, loss), members) in enumerate(groups):
        for col, (which, name) in enumerate((("d_loss", "discriminator"), ("g_loss", "generator"))):
            ax = axes[row][col]
            lows, highs = [], []
            drawn = [r for r in members if np.isfinite(getattr(r, which)).any()]
            smooth = smoothing > 1
            # Pass 1: raw losses, faint; pass 2: moving averages on top of every raw line.
            for run in drawn:
                y = getattr(run, which)
                st = styles[run.key]
                ax.plot(
                    run.loss_steps,
                    y,
                    color=st["color"],
                    linewidth=0.6,
                    alpha=0.22 if smooth else 0.9,
                    label=None if smooth else _loss_label(run, which),
                )
                finite = y[np.isfinite(y)]
                lows.append(np.percentile(finite, 1))
                highs.append(np.percentile(finite, 99))
            for run in drawn if smooth else []:
                y = getattr(run, which)
                avg, offset = _moving_average(y, smoothing)
                ax.plot(
                    run.loss_steps[offset : offset + len(avg)],
                    avg,
                    color=styles[run.key]["color"],
                    linewidth=1.6,
                    label=_loss_label(run, which),
                )
                if np.isfinite(avg).any():
                    lows.append(np.nanmin(avg))
                    highs.append(np.nanmax(avg))
            if lows:
                lo, hi = min(lows), max(highs)
                pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
                ax.set_ylim(lo - pad, hi + pad)
                ax.legend(
                    fontsize=8,
                    loc="upper right",
                    title="mean ± std",
                    title_fontsize=8,
                    framealpha=0.85,
                )
            else:
                ax.text(0.5, 0.5, "no losses", ha="center", va="center", transform=ax.transAxes)
            _step_axis(ax)
            ax.set_ylabel(f"{name[0].upper()} loss")
            ax.set_title(f"{method} / loss {loss} — {name}", fontsize=10)
    smoothed = f"bold: moving average over {smoothing} steps; " if smoothing > 1 else ""
    fig.suptitle(
        f"Training losses (faint: every step; {smoothed}"
        "y-range clipped to the 1st–99th percentile)",
        fontsize=10,
    )
    _save(fig, path)


def _sample_steps(runs: list[_Run], columns: int) -> list[int]:
    """A few checkpoint steps spread over training (first and last included)."""
    sets = [set(r.samples) for r in runs if r.samples]
    if not sets or columns <= 0:
        return []
    available = sorted(set.intersection(*sets)) or sorted(set.union(*sets))
    if len(available) <= columns:
        return available
    first, last = available[0], available[-1]
    # Geometric spacing favours the early steps the paper's claims are about.
    if first > 0:
        targets = np.geomspace(first, last, columns)
    else:
        targets = np.concatenate([[0], np.geomspace(max(available[1], 1), last, columns - 1)])
    chosen: list[int] = []
    for t in targets:
        pick = min(available, key=lambda s: (abs(s - t), s))
        if pick not in chosen:
            chosen.append(pick)
    # Fill any gaps (duplicates) with evenly spaced indices.
    for i in np.linspace(0, len(available) - 1, columns).round().astype(int):
        if len(chosen) >= columns:
            break
        if available[i] not in chosen:
            chosen.append(available[i])
    return sorted(chosen)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _plot_samples(runs: list[_Run], path: Path, columns: int) -> None:
    steps = _sample_steps(runs, columns)
    if not steps:
        fig = Figure(figsize=(6.0, 1.5), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no sample grids found", ha="center", va="center", fontsize=12)
        _save(fig, path)
        return
    cell = 2.1
    fig = Figure(
        figsize=(0.5 + cell * len(steps), 0.5 + cell * len(runs)), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(len(runs), len(steps), squeeze=False)
    for r, run in enumerate(runs):
        for c, step in enumerate(steps):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(f"step {_fmt_step(step)}", fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{run.key}\n({_role(run.info.init)})", fontsize=9)
            if not run.samples:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
                continue
            actual = min(run.samples, key=lambda s: (abs(s - step), s))
            try:
                image = _read_image(run.samples[actual])
            except (OSError, ValueError, SyntaxError) as exc:  # a broken PNG: note it, go on
                ax.text(
                    0.5,
                    0.5,
                    f"unreadable\n{type(exc).__name__}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                continue
            ax.imshow(image, interpolation="antialiased")
            if actual != step:
                ax.set_xlabel(f"(step {_fmt_step(actual)})", fontsize=8)
    fig.suptitle("Samples at a fixed z over training", fontsize=11)
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def build_report(
    runs: list[RunInfo],
    out_dir: Path,
    *,
    early_checkpoints: int = 3,
    smoothing: int = 25,
    sample_columns: int = 5,
    modes: dict | None = None,
) -> dict:
    """Write report.md, fid.png, is.png, losses.png, samples.png and summary.json into
    `out_dir` and return the summary dict (the content of summary.json).

    summary = {"runs": {key: per-run numbers}, "pairs": [per-pair comparison],
               "unpaired": [keys], "files": {...}, "early_checkpoints": .., "smoothing": ..}
    """
    if not runs:
        raise ValueError("build_report needs at least one run")
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate run keys: {keys}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    pairs = pair_runs(runs)
    paired_keys = [k for o, u in pairs for k in (o.key, u.key)]
    unpaired = [k for k in keys if k not in paired_keys]
    order = paired_keys + unpaired
    loaded = {r.key: _load(r) for r in runs}
    ordered = [loaded[k] for k in order]
    comparisons = [_compare(loaded[o.key], loaded[u.key], early_checkpoints) for o, u in pairs]
    for cmp in comparisons:
        cmp["verdict"] = _verdict_line(cmp)

    styles = _styles(ordered)
    _plot_fid(ordered, styles, out_dir / FIGURES["fid"])
    _plot_is(ordered, styles, out_dir / FIGURES["is"])
    _plot_losses(ordered, styles, out_dir / FIGURES["losses"], smoothing)
    _plot_samples(ordered, out_dir / FIGURES["samples"], sample_columns)

    per_run: dict[str, Any] = {}
    for run in ordered:
        best, best_step = _best(run)
        per_run[run.key] = {
            "init": run.info.init,
            "loss": run.info.loss,
            "method": run.info.method,
            "role": _role(run.info.init),
            "steps": run.fid_steps,
            "fid": run.fid,
            "isc_mean": run.isc_mean,
            "kid_mean": run.kid_mean,
            "final": _final(run),
            "best_fid": best,
            "best_fid_step": best_step,
            "losses": run.loss_stats,
            "floor": _floor(run),
            "last_step": int(run.loss_steps[-1]) if len(run.loss_steps) else None,
            "sample_steps": list(run.samples),
        }
    claims = claims_table(comparisons)
    summary = _clean(
        {
            "runs": per_run,
            "pairs": comparisons,
            "claims": claims,
            "unpaired": unpaired,
            "early_checkpoints": early_checkpoints,
            "smoothing": smoothing,
            "files": {"report": "report.md", "summary": "summary.json", **FIGURES},
        }
    )
    markdown = _render_markdown(ordered, comparisons, unpaired, early_checkpoints, smoothing)
    claims_section = [
        "## Claims of the paper, across seeds",
        "",
        "Per seed, the difference between the paired runs, oriented so that a positive value "
        "(a ratio above 1 for convergence) favours unbalanced; mean and 95 % confidence interval "
        "over seeds (Student's t). A claim holds only when the whole interval is on its side.",
        "",
        md_table(*claims_cells(claims)) if claims else "No (ordinary, unbalanced) pair.",
        "",
    ]
    # The claims go right after the verdicts at a glance, where a reader looks first.
    head, sep, rest = markdown.partition("\n## Runs")
    markdown = head + "\n".join(claims_section) + sep + rest if sep else markdown
    markdown += (
        "\n## Which method and init combinations exist\n\n"
        "Unbalanced initialisation (the VAE decoder's weights) applies to every method whose "
        "generator has a VAE-decoder twin; a run with another combination is a config error.\n\n"
        + combinations_markdown()
        + "\n"
    )
    if modes:  # the mode-coverage benchmarks of the `modes` stage, when configured
        from ugan.modebench.tables import markdown as modes_markdown

        markdown += "\n## Mode-coverage benchmarks\n\n" + modes_markdown(modes) + "\n"
    atomic_write_text(out_dir / "report.md", markdown)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
