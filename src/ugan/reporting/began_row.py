"""The BEGAN row of the reproduction table (BEGAN §3.4, Fig. 3–4), assessed from a γ sweep of
BEGAN runs the pipeline trained and evaluated (profile `repro-began-mnist`):

- no checkpoint after the first is `collapsed` (spread under a quarter of the real data's), in
  any run of the sweep;
- the γ = 0.5 run's final MS-SSIM within 0.05 of the real images' (RFGAN Table 1's measure);
- γ trades diversity for quality (§3.4: "lower values of γ lead to lower image diversity"):
  MS-SSIM falls as γ rises;
- M_global tracks convergence (Fig. 4): Spearman(M_global, FID) over a run's checkpoints ≥ 0.8,
  a checkpoint's M_global being the mean of the values logged since the previous checkpoint
  (single log rows are noisy; the paper plots a smoothed curve too).

Beside the bars, why the sweep can fail on a dataset: each class's L(x) over the mean, from a
discriminator trained on the real images alone (`ugan.evaluation.began_classes`): at γ < 1 the
equilibrium asks for images γ times as easy as the real ones, i.e. the classes at or below γ.

`load_evidence` and `class_evidence` read the pipeline's files; `assess_began` is pure.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ugan.reporting.reproduction import (
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Assessment,
    Row,
)

DIVERSITY_TOLERANCE = 0.05  # |MS-SSIM − real's| at the paper's γ
SPEARMAN_BAR = 0.8
PAPER_GAMMA = 0.5
SWEEP = "gamma-sweep"  # the variant of the check that compares the runs of the sweep
LABELS = {
    "late_collapsed_checkpoints": "collapsed checkpoints after the first",
    "msssim_gap_to_real": "MS-SSIM − real's",
    "msssim_by_gamma": "MS-SSIM as γ rises",
    "spearman_m_global_fid": "Spearman(M_global, FID)",
}


def load_evidence(gammas: dict[str, float], runs_dir: Path, eval_dir: Path) -> dict[str, dict]:
    """Per BEGAN run (key → its γ): checkpoint FIDs, collapsed checkpoints, final MS-SSIM and
    the real data's, and the logged (step, M_global) rows."""
    evidence = {}
    for key, gamma in gammas.items():
        metrics = json.loads((eval_dir / key / "metrics.json").read_text())
        info = json.loads((eval_dir / key / "info.json").read_text())
        with open(runs_dir / key / "losses.csv", newline="") as handle:
            m_global = [(int(r["step"]), float(r["m_global"])) for r in csv.DictReader(handle)]
        fid = {int(step): row["fid"] for step, row in metrics["checkpoints"].items()}
        evidence[key] = {
            "gamma": gamma,
            "fid": dict(sorted(fid.items())),
            "collapsed_steps": info["collapsed_checkpoints"],
            "msssim": metrics["diversity"]["msssim"],
            "msssim_real": metrics["diversity"]["msssim_real"],
            "m_global": m_global,
        }
    return evidence


def class_evidence(gan, model, prepared: Path) -> dict | None:
    """`class_reconstruction` of the prepared training images with the sweep's own nets,
    optimizer, batch and steps (`gan`: a resolved BEGAN run's); None for unlabelled data."""
    from ugan.data.prepared import load_prepared
    from ugan.evaluation.began_classes import class_reconstruction

    images, labels = load_prepared(prepared).train
    if len(np.unique(labels)) < 2:
        return None
    _, channels, size, _ = images.shape
    arch = model.arch(size, channels)
    arch = dataclasses.replace(arch, base_channels=gan.began.filters or arch.base_channels)
    betas = (gan.optim.beta1, gan.optim.beta2)
    return class_reconstruction(
        images, labels, arch, steps=gan.steps, lr=gan.optim.lr, betas=betas,
        batch_size=gan.batch_size, seed=gan.seed,
    )  # fmt: skip


def _classes_beside(classes: dict, gammas: list[float]) -> dict:
    """The probe as a line beside the bars: every class's ratio, easiest first, and which
    classes each γ of the sweep admits."""
    ordered = sorted(classes["ratio"].items(), key=lambda item: item[1])
    admitted = {g: [str(c) for c, r in ordered if r <= g] for g in gammas}
    shown = (
        ", ".join(f"{c}: {r:.2f}" for c, r in ordered)
        + f"; blank {classes['blank']:.2f}; classes ≤ γ: "
        + ", ".join(f"γ {g:g}: {' '.join(admitted[g]) or 'none'}" for g in gammas)
    )
    values = [r for _, r in ordered]
    return {
        "variant": "real images", "metric": "class_l_ratio",
        "label": "L(x) of a class ÷ mean (D on real images only)",
        "paper": "E[L(G(z))] = γ E[L(x)] (§3.4)",
        "mean": values[0], "low": values[0], "high": values[-1], "n": len(values),
        "values": values, "shown": shown, "steps": classes["steps"],
    }  # fmt: skip


def m_global_at_checkpoints(rows: list[tuple[int, float]], steps: list[int]) -> list[float]:
    """The mean M_global of the rows logged in (previous checkpoint, checkpoint]."""
    means, previous = [], -1
    for step in steps:
        window = [v for s, v in rows if previous < s <= step and math.isfinite(v)]
        means.append(sum(window) / len(window) if window else math.nan)
        previous = step
    return means


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr  # scoring's dependency; only this row needs it here

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)


def _check(run: str, metric: str, value: float, bar: str, passed: bool, steps: int, **more):
    """A check as the table holds it: `metric` a name MLflow takes, `label` what a reader sees."""
    return {
        "variant": run, "metric": metric, "label": LABELS[metric],
        "paper": more.pop("paper", "figure only"),
        "mean": value, "low": value, "high": value, "n": 1, "values": [value],
        "bar": bar, "passed": bool(passed), "steps": steps, **more,
    }  # fmt: skip


def _checks(evidence: dict[str, dict]) -> list[dict]:
    by_gamma = sorted(evidence.items(), key=lambda item: item[1]["gamma"])
    steps = {key: max(e["fid"]) for key, e in by_gamma}
    checks = []
    late = {key: [s for s in e["collapsed_steps"] if s > min(e["fid"])] for key, e in by_gamma}
    worst = max(late, key=lambda key: len(late[key]))
    checks.append(_check(
        worst, "late_collapsed_checkpoints", float(len(late[worst])),
        "0 in every run of the sweep", all(not v for v in late.values()), steps[worst],
        shown=", ".join(f"γ {evidence[k]['gamma']:g}: {len(v)}" for k, v in late.items()),
    ))  # fmt: skip
    paper = [key for key, e in by_gamma if e["gamma"] == PAPER_GAMMA]
    if paper:
        e = evidence[paper[0]]
        gap = e["msssim"] - e["msssim_real"]
        checks.append(_check(
            paper[0], "msssim_gap_to_real", gap, f"within ±{DIVERSITY_TOLERANCE} of real",
            abs(gap) <= DIVERSITY_TOLERANCE, steps[paper[0]],
            shown=f"{e['msssim']:.3f} vs real {e['msssim_real']:.3f} (gap {gap:+.3f})",
        ))  # fmt: skip
    if len(by_gamma) > 1:
        values = [e["msssim"] for _, e in by_gamma]
        falling = all(a > b for a, b in zip(values, values[1:], strict=False))
        checks.append(_check(
            SWEEP, "msssim_by_gamma", values[-1] - values[0], "falls (more diverse)",
            falling, min(steps.values()), paper="less diverse at low γ (§3.4)",
            shown=" → ".join(f"γ {e['gamma']:g}: {e['msssim']:.3f}" for _, e in by_gamma),
        ))  # fmt: skip
    for key, e in by_gamma:
        ckpts = list(e["fid"])
        rho = spearman(m_global_at_checkpoints(e["m_global"], ckpts), list(e["fid"].values()))
        checks.append(_check(
            key, "spearman_m_global_fid", rho, f"≥ {SPEARMAN_BAR}",
            math.isfinite(rho) and rho >= SPEARMAN_BAR, steps[key],
            paper="M_global tracks convergence (Fig. 4)",
            shown=f"{rho:.2f} over {len(ckpts)} checkpoints",
        ))  # fmt: skip
    return checks


def assess_began(row: Row, evidence: dict[str, dict], classes: dict | None = None) -> Assessment:
    """The verdict of the BEGAN row from `load_evidence`'s runs (one seed per γ), with
    `class_evidence` beside it when given."""
    if not evidence:
        return Assessment(row.name, row.claim, row.where, NOT_COMPARABLE, "no BEGAN run found")
    checks = _checks(evidence)
    steps = min(c["steps"] for c in checks)
    failed = [f"{c['variant']} {c['label']} {c['bar']}" for c in checks if not c["passed"]]
    if not failed:
        verdict, reason = REPRODUCED, "every bar met"
    else:
        verdict, reason = NOT_REPRODUCED, "missed: " + "; ".join(failed)
    gammas = sorted(e["gamma"] for e in evidence.values())
    reason += f" — one seed per γ ({', '.join(f'{g:g}' for g in gammas)}), at {steps:,} steps"
    beside = [_classes_beside(classes, gammas)] if classes else []
    return Assessment(row.name, row.claim, row.where, verdict, reason, checks, beside, steps)
