"""Evaluation of one run: IS / FID / KID at every saved checkpoint against the held-out split,
the floor (train split scored as if generated), and the loss statistics of paper Fig. 3.

Three JSON files per run: `score.json` is the run's DVC metrics file, `{<run>: {fid, best_fid}}`
(the final generator's FID, the one the champion check registers, and the best over the
checkpoints: short names under the run's key, so the runs of a pipeline or of a grid's
experiments are columns side by side in `dvc exp show`); `metrics.json` holds every number (what
the report and the champion read: final and best FID, IS, KID, loss statistics, the floor);
`info.json` the words and bookkeeping (run, init, loss, method, seed, the feature network, the
collapsed checkpoints, why IS is missing). A feature network without class posteriors (the
rotation-trained classifier of unlabelled data) gives no IS: fidelity.csv then holds NaN in the
IS columns, metrics.json leaves the IS numbers out, and info.json's
`inception_score.reason` says why."""

from __future__ import annotations

import csv
import io
import math
import numbers
import warnings
from pathlib import Path

import torch

from ugan.config.schema import EvalParams, ResolvedRun
from ugan.core.errors import InputError, InputMissingError
from ugan.core.io import atomic_write_json, atomic_write_text, load_checkpoint
from ugan.core.paths import RunLayout
from ugan.core.runtime import progress
from ugan.data.prepared import PreparedData, to_uint8
from ugan.evaluation.collapse import collapse_metrics
from ugan.evaluation.diversity import diversity_metrics
from ugan.evaluation.fidelity import FidelityEvaluator, floor_metrics
from ugan.evaluation.stability import paper_d_scale, summarize_losses
from ugan.nets.generator_file import load_generator, noise, sample
from ugan.tracking.stage_run import StageRun

FIDELITY_COLUMNS = (
    "step",
    "fid",
    "isc_mean",
    "isc_std",
    "kid_mean",
    "kid_std",
    "diversity_ratio",
    "collapsed",
)
CACHE_DIR = Path(".ugan/cache/fidelity")


def read_losses(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise InputError(f"{path} holds no loss rows")
    return {name: [float(r[name]) for r in rows] for name in ("d_loss", "g_loss")}


def _write_fidelity(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIDELITY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if k != "step" else row[k]) for k in FIDELITY_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _numbers(values: dict) -> dict:
    """The finite numbers of `values`: an IS that was not computed (NaN) is left out, so the
    file holds numbers only."""
    out = {}
    for key, value in values.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if math.isfinite(value):
                out[key] = int(value) if isinstance(value, numbers.Integral) else float(value)
    return out


def _outputs(run_key, run, params, weights, evaluator, rows, best, num_samples):
    """(metrics.json: numbers only, info.json: the words and bookkeeping) of one run."""
    final = {k: rows[-1][k] for k in ("step", "fid", "isc_mean", "kid_mean", "diversity_ratio")}
    final["step"] = int(final["step"])
    collapsed = [int(r["step"]) for r in rows if r["collapsed"]]
    metrics = {
        "final": _numbers(final),
        "best_fid": best["fid"],
        "best_fid_step": int(best["step"]),
        "collapsed": len(collapsed),
    }
    info = {
        "run": run_key,
        "init": run.init,
        "loss": run.gan.loss,
        "method": run.gan.method,
        "seed": run.gan.seed,
        "num_samples": num_samples,
        "feature_extractor": params.feature_extractor,
        "feature_network": feature_network(params, weights),
        "inception_score": {
            "available": evaluator.isc_unavailable is None,
            "reason": evaluator.isc_unavailable,
        },
        "collapsed_checkpoints": collapsed,
    }
    return metrics, info


def score(metrics: dict) -> dict[str, float]:
    """score.json's entry of a run: its final and best FID (a FID that could not be computed
    is left out: DVC metrics are numbers)."""
    numbers = {"fid": metrics["final"].get("fid"), "best_fid": metrics["best_fid"]}
    return {k: v for k, v in numbers.items() if isinstance(v, float) and math.isfinite(v)}


def feature_network(params: EvalParams, weights: Path) -> dict:
    """What scored the run: the extractor and, for the classifier, its training objective
    ("labels" or "rotation") and held-out accuracy on it, as train_classifier recorded them."""
    if params.feature_extractor != "classifier":
        return {"name": params.feature_extractor}
    payload = load_checkpoint(weights)
    recorded = payload.get("metrics") or {}
    return {
        "name": "classifier",
        "objective": payload.get("config", {}).get("objective", "labels"),
        "heldout_accuracy": recorded.get("heldout_accuracy"),
    }


def evaluate_run(
    run_key: str,
    run: ResolvedRun,
    params: EvalParams,
    data: PreparedData,
    classifier_path: Path,
    runs_dir: Path,
    out_dir: Path,
    tracker: StageRun,
    *,
    device: torch.device | str = "cpu",
) -> dict:
    layout = RunLayout(runs_dir / run_key)
    steps = layout.checkpoint_steps()
    if not steps:
        raise InputMissingError(f"no generator checkpoints in {layout.checkpoints}")
    heldout = torch.as_tensor(data.heldout[0])
    train = torch.as_tensor(data.train[0])
    num_samples = min(params.num_samples, len(train))
    common = {
        "kid_subset_size": min(params.kid_subset_size, num_samples, len(heldout)),
        "batch_size": params.batch_size,
        "device": str(device),
        "cache_dir": CACHE_DIR,
        "seed": params.seed,
        "feature_extractor": params.feature_extractor,
    }
    # The classifier by default; torch-fidelity's InceptionV3 from eval.weights_path on request.
    inception = params.feature_extractor == "inception" and params.weights_path
    weights = Path(params.weights_path) if inception else classifier_path
    evaluator = FidelityEvaluator(weights, heldout, **common)
    floor = floor_metrics(weights, heldout, train, num_samples=num_samples, **common)

    rows = []
    with progress(len(steps), f"evaluate@{run_key}", unit="ckpt") as bar:
        for step in steps:
            generator = load_generator(layout.checkpoint_path(step), device)
            z = noise(
                num_samples,
                generator.cfg.latent_dim,
                generator.prior,
                seed=params.seed,
                device=device,
            )
            generated = to_uint8(sample(generator, z, params.batch_size)).cpu()
            scores = {**evaluator(generated), **collapse_metrics(generated, heldout, params.seed)}
            if scores["collapsed"]:
                warnings.warn(
                    f"{run_key} step {step}: generator looks collapsed (spread "
                    f"{scores['diversity_ratio']:.2f} of the real data's)",
                    stacklevel=1,
                )
            rows.append({"step": step, **scores})
            tracker.log_metrics(
                {k: v for k, v in scores.items() if math.isfinite(float(v))}, step=step
            )
            bar.set_postfix(step=step, fid=f"{scores['fid']:.1f}", refresh=False)
            bar.update(1)

    # MS-SSIM diversity of the final generator, with the real data's as reference (RFGAN Tab. 1).
    diversity = diversity_metrics(generated, heldout, num_pairs=500, seed=params.seed)
    tracker.log_metrics(diversity)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_fidelity(out_dir / "fidelity.csv", rows)
    best = min(rows, key=lambda r: r["fid"])
    scale = paper_d_scale(run.gan.method, run.gan.loss)
    losses = summarize_losses(read_losses(layout.losses_csv), d_scale=scale)
    metrics, info = _outputs(run_key, run, params, weights, evaluator, rows, best, num_samples)
    metrics |= {
        "diversity": _numbers(diversity),
        "losses": _numbers(losses),
        "floor": _numbers({k: floor[k] for k in ("fid", "isc_mean", "kid_mean")}),
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_json(out_dir / "score.json", {run_key: score(metrics)})
    atomic_write_json(out_dir / "info.json", info)
    tracker.log_metrics(
        {
            **losses,
            "best_fid": best["fid"],
            **{f"floor_{k}": v for k, v in metrics["floor"].items()},
        }
    )
    tracker.log_artifact(out_dir / "fidelity.csv")
    return metrics
