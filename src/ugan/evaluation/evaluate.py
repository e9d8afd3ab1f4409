"""Evaluation of one run: IS / FID / KID and precision / recall / density / coverage
(`ugan.evaluation.prdc`) at every saved checkpoint against the held-out split,
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
`inception_score.reason` says why. Beside them: the weight average of a run trained with
`gan.ema` scored at every checkpoint (`ugan.evaluation.ema`: fidelity_ema.csv, metrics.json's
`ema`, score.json's `ema_fid`) and latent interpolation grids (`ugan.evaluation.interpolations`:
interpolations/step_<step>_<mode>.png)."""

from __future__ import annotations

import csv
import io
import math
import numbers
import warnings
from pathlib import Path

import torch

from ugan.config.schema import EvalParams, ResolvedRun
from ugan.core.checkpoint_io import load_checkpoint
from ugan.core.errors import InputError, InputMissingError
from ugan.core.io import atomic_write_json, atomic_write_text
from ugan.core.paths import RunLayout
from ugan.core.runtime import ThreadsFollower, progress
from ugan.data.prepared import PreparedData
from ugan.evaluation.checkpoints import CheckpointScorer
from ugan.evaluation.diversity import diversity_metrics
from ugan.evaluation.ema import ema_section, score_ema
from ugan.evaluation.fidelity import FidelityEvaluator, floor_metrics, floor_subset
from ugan.evaluation.interpolations import write_interpolations
from ugan.evaluation.prdc import PRDC_KEYS, SCORING_KEYS, PRDCEvaluator, fid_singular
from ugan.evaluation.stability import summarize_losses
from ugan.losses import get_loss
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
    *PRDC_KEYS,
    *SCORING_KEYS,
)
CACHE_DIR = Path(".ugan/cache/fidelity")
INTERPOLATIONS = "interpolations"  # evaluation/<run>/interpolations/step_<step>_<mode>.png


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
        writer.writerow({k: _cell(row[k]) for k in FIDELITY_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _cell(value) -> str:
    """A fidelity.csv cell: integers (step, sample counts) and words (the digest) as they are,
    every other number to 6 significant digits."""
    if isinstance(value, (str, numbers.Integral)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.6g}"


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


def _add_scoring(
    metrics: dict, info: dict, rows: list[dict], scoring: dict, nearest_k: int
) -> None:
    """PRDC (final and per checkpoint) and the sample count into metrics.json; what the scores
    were scored with (feature network digest, N, d, k, whether FID is singular) into info.json.

    A FID at N ≤ d stays in the files, next to N and d and `scoring.fid_singular` (its reason):
    it is the deterministic output of the same computation, so a run's curve and the champion
    still see it, and nothing reading the row can miss its N; the report prints the reason in
    place of the number."""
    counts = {key: scoring[key] for key in ("num_samples", "num_reference", "feature_dim")}
    metrics["final"] |= _numbers({**{key: rows[-1][key] for key in PRDC_KEYS}, **counts})
    # Keyed by step, so metrics.json stays numbers only (what `dvc metrics` can read).
    metrics["checkpoints"] = {
        str(int(row["step"])): _numbers({key: row[key] for key in ("fid", *PRDC_KEYS)})
        for row in rows
    }
    singular = fid_singular(
        *(scoring[key] for key in ("num_samples", "num_reference", "feature_dim"))
    )
    info["feature_network"]["sha256"] = scoring["feature_sha256"]
    info["scoring"] = {**scoring, "nearest_k": nearest_k, "fid_singular": singular}


def score(metrics: dict) -> dict[str, float]:
    """score.json's entry of a run: its final and best FID, and the final EMA generator's
    (`ema_fid`, runs with `gan.ema`) (a FID that could not be computed is left out: DVC metrics
    are numbers)."""
    numbers = {"fid": metrics["final"].get("fid"), "best_fid": metrics["best_fid"]}
    numbers["ema_fid"] = metrics.get("ema", {}).get("final", {}).get("fid")
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


def paper_d_scale(method: str, loss: str) -> float:
    """The factor from a run's logged d_loss to the Unbalanced GAN paper's Fig. 3 scale (the
    mean of D's two terms, not their sum: `ugan.losses.GANLoss.paper_d_scale`). Methods whose D
    loss is their own (BEGAN's, GAAN's three terms) have no paper figure of this kind: 1."""
    return get_loss(loss).paper_d_scale if method in ("gan", "rfgan") else 1.0


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
    prdc = PRDCEvaluator(evaluator, params.nearest_k)
    scorer = CheckpointScorer(
        evaluator, prdc, heldout, num_samples, params.seed, params.batch_size, device
    )
    floor |= prdc(floor_subset(train, num_samples, params.seed))

    rows, follow_jobs = [], ThreadsFollower()
    with progress(len(steps), f"evaluate@{run_key}", unit="ckpt") as bar:
        for step in steps:
            follow_jobs()
            generator, generated, scores = scorer(layout.checkpoint_path(step))
            if scores["collapsed"]:
                warnings.warn(
                    f"{run_key} step {step}: generator looks collapsed (spread "
                    f"{scores['diversity_ratio']:.2f} of the real data's)",
                    stacklevel=1,
                )
            rows.append(scorer.row(step, scores))
            _interpolations(generator, out_dir, step, tracker)
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
    ema_rows = score_ema(layout, scorer, tracker, label=run_key)
    _write_fidelity(out_dir / "fidelity_ema.csv", ema_rows)  # header only without EMA
    best = min(rows, key=lambda r: r["fid"])
    scale = paper_d_scale(run.gan.method, run.gan.loss)
    losses = summarize_losses(read_losses(layout.losses_csv), d_scale=scale)
    metrics, info = _outputs(run_key, run, params, weights, evaluator, rows, best, num_samples)
    metrics |= {
        "diversity": _numbers(diversity),
        "losses": _numbers(losses),
        "floor": _numbers({k: floor[k] for k in ("fid", "isc_mean", "kid_mean", *PRDC_KEYS)}),
    }
    _add_scoring(metrics, info, rows, scorer.scoring, params.nearest_k)
    if ema_rows:
        metrics["ema"] = ema_section(ema_rows)
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
    tracker.log_artifact(out_dir / "fidelity_ema.csv")
    return metrics


def _interpolations(generator, out_dir: Path, step: int, tracker: StageRun) -> None:
    """Checkpoint `step`'s latent interpolation grids into out_dir/interpolations/ and MLflow."""
    folder = out_dir / INTERPOLATIONS
    folder.mkdir(parents=True, exist_ok=True)
    for path in write_interpolations(generator, folder, step):
        tracker.log_artifact(path, INTERPOLATIONS)
