"""The generator's weight average (`gan.ema`, `ugan.training.ema`) scored beside G.

A run trained with EMA has `generator_ema_step_*.pt` beside each checkpoint; each is scored like
the raw generator (same evaluator, same latents: `eval.seed`), so the two rows of a step differ
only by the weights. Rows go to `fidelity_ema.csv` (the columns of fidelity.csv; no rows for a
run without EMA), MLflow metrics `ema_<name>` at the checkpoint's step, and metrics.json's `ema`
section: the final average's numbers (the model train_gan logs and the champion compares) and
the best FID over the checkpoints.
"""

from __future__ import annotations

import math

from ugan.core.paths import RunLayout
from ugan.core.runtime import progress
from ugan.evaluation.checkpoints import CheckpointScorer
from ugan.evaluation.prdc import PRDC_KEYS


def score_ema(layout: RunLayout, scorer: CheckpointScorer, tracker, *, label: str) -> list[dict]:
    """One fidelity.csv row per EMA checkpoint (none without EMA)."""
    steps = layout.checkpoint_steps(ema=True)
    rows = []
    with progress(len(steps), f"{label} ema", unit="ckpt") as bar:
        for step in steps:
            _, _, scores = scorer(layout.ema_checkpoint_path(step))
            rows.append(scorer.row(step, scores))
            finite = {f"ema_{k}": v for k, v in scores.items() if math.isfinite(float(v))}
            tracker.log_metrics(finite, step=step)
            bar.update(1)
    return rows


def ema_section(rows: list[dict]) -> dict:
    """metrics.json's `ema`: the final average's step / FID / IS / KID / PRDC, the best FID."""
    final = {k: float(rows[-1][k]) for k in ("fid", "isc_mean", "kid_mean", *PRDC_KEYS)}
    best = min(rows, key=lambda r: r["fid"])
    return {
        "final": {"step": int(rows[-1]["step"])}
        | {k: v for k, v in final.items() if math.isfinite(v)},
        "best_fid": float(best["fid"]),
        "best_fid_step": int(best["step"]),
    }
