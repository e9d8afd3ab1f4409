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

import torch

from ugan.core.paths import RunLayout
from ugan.core.runtime import progress
from ugan.data.prepared import to_uint8
from ugan.evaluation.collapse import collapse_metrics
from ugan.nets.generator_file import load_generator, noise, sample


def score_ema(
    layout: RunLayout,
    evaluator,  # FidelityEvaluator
    heldout: torch.Tensor,
    params,  # EvalParams
    num_samples: int,
    tracker,
    *,
    label: str,
    device: torch.device | str = "cpu",
) -> list[dict]:
    """One row per EMA checkpoint (none without EMA): the step and its scores."""
    steps = layout.checkpoint_steps(ema=True)
    rows = []
    with progress(len(steps), f"{label} ema", unit="ckpt") as bar:
        for step in steps:
            generator = load_generator(layout.ema_checkpoint_path(step), device)
            latent_dim = generator.cfg.latent_dim
            z = noise(num_samples, latent_dim, generator.prior, seed=params.seed, device=device)
            generated = to_uint8(sample(generator, z, params.batch_size)).cpu()
            scores = {**evaluator(generated), **collapse_metrics(generated, heldout, params.seed)}
            rows.append({"step": step, **scores})
            finite = {f"ema_{k}": v for k, v in scores.items() if math.isfinite(float(v))}
            tracker.log_metrics(finite, step=step)
            bar.update(1)
    return rows


def ema_section(rows: list[dict]) -> dict:
    """metrics.json's `ema`: the final average's step / FID / IS / KID, the best FID."""
    final = {k: float(rows[-1][k]) for k in ("fid", "isc_mean", "kid_mean")}
    best = min(rows, key=lambda r: r["fid"])
    return {
        "final": {"step": int(rows[-1]["step"])}
        | {k: v for k, v in final.items() if math.isfinite(v)},
        "best_fid": float(best["fid"]),
        "best_fid_step": int(best["step"]),
    }
