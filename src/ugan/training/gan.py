"""The training loop shared by every method: steps, checkpoint and sample cadence, per-step
losses to CSV and MLflow, resume, clean stops, and a guard against non-finite losses.
What one step does (D / G updates, n_critic, penalties) belongs to the method."""

from __future__ import annotations

import csv
import io
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ugan.config.schema import PerfParams, ResolvedRun
from ugan.core.errors import InputError, NonFiniteLossError
from ugan.core.io import atomic_write_json, atomic_write_text, save_checkpoint
from ugan.core.paths import RESUME_ROOT, RunLayout
from ugan.core.runtime import progress
from ugan.data.batches import InfiniteBatches
from ugan.data.images import save_grid
from ugan.data.prepared import PreparedData
from ugan.methods.table import get_method
from ugan.nets.dcgan import ArchConfig
from ugan.nets.dcgan import one_hot
from ugan.nets.generator_file import generator_payload, noise, sample
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import Accel, LossBuffer
from ugan.training.resume import ResumeStore, StopRequest, capture_rng, restore_rng


def _write_losses(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def build_method(
    arch, run: ResolvedRun, generator_init: dict, init_std: float, resources: dict | None = None
):
    """The run's method from the registry, its generator loaded from `generator_init`;
    `resources` are files a method reads besides (RFGAN: `dae_path`)."""
    if generator_init.get("arch") != arch.to_dict():
        differences = {
            key: (generator_init.get("arch", {}).get(key), value)
            for key, value in arch.to_dict().items()
            if generator_init.get("arch", {}).get(key) != value
        }
        raise InputError(
            f"the generator init was built for another architecture; (init, params) differ at "
            f"{differences}: rerun the stage that wrote it"
        )
    return get_method(run.gan.method).build(
        arch, run, generator_init, init_std, **(resources or {})
    )


def resume_fingerprint(run_key: str, run: ResolvedRun, arch: ArchConfig, extra: dict) -> dict:
    """What must not change across a resume. Steps, cadences and sample counts may change:
    extending a run is a legitimate resume."""
    free = {"steps", "checkpoint_every", "log_every", "num_sample_images", "nonfinite_retries"}
    gan = {k: v for k, v in run.gan.model_dump().items() if k not in free}
    return {"run": run_key, "init": run.init, "arch": arch.to_dict(), **gan, **extra}


def _snapshot(method, batches: InfiniteBatches, rows: list[dict], run_id) -> dict:
    columns = list(rows[0]) if rows else []
    return {
        "method": method.state_dict(),
        "batches": batches.state_dict(),
        "rng": capture_rng(),
        "loss_columns": columns,
        "losses": torch.tensor([[float(r[c]) for c in columns] for r in rows], dtype=torch.float64),
        "mlflow_run_id": run_id or "",
    }


def _restore(method, batches: InfiniteBatches, state: dict) -> list[dict]:
    method.load_state_dict(state["method"])
    batches.load_state_dict(state["batches"])
    restore_rng(state["rng"])
    columns = state["loss_columns"]
    return [
        {"step": int(row[0]), **{c: f"{v:.6g}" for c, v in zip(columns[1:], row[1:], strict=True)}}
        for row in state["losses"].tolist()
    ]


def train_gan(
    run_key: str,
    run: ResolvedRun,
    arch: ArchConfig,
    data: PreparedData,  # or anything with `.train`
    generator_init: dict,
    out_dir: Path,
    tracker: StageRun,
    *,
    init_std: float = 0.02,
    device: torch.device | str = "cpu",
    fingerprint: dict | None = None,
    resume_root: Path = RESUME_ROOT,
    perf: PerfParams | None = None,
    wrap: Callable | None = None,
    render: Callable[[torch.Tensor, Path], Path] = save_grid,
    resources: dict | None = None,
    store_name: str | None = None,
) -> dict:
    """Train one run. `perf` is the speed policy (ugan.training.accel); `wrap(method, batches)` may
    return a wrapped method, applied last (ugan.training.distributed: data-parallel training).
    `data.train` gives (images or 2-D points, labels); `render` draws the samples of a
    checkpoint (an image grid, or a scatter plot for points)."""
    cfg = run.gan
    layout = RunLayout(Path(out_dir))
    method = build_method(arch, run, generator_init, init_std, resources)
    method.to(device)
    images, labels = data.train
    batches = InfiniteBatches(images, labels, cfg.batch_size, seed=cfg.seed, device=device)
    accel = Accel.from_params(perf, device)
    method = accel.prepare(method, batches)
    if wrap is not None:
        method = wrap(method, batches)
    z_fixed = noise(
        cfg.num_sample_images, arch.latent_dim, method.prior, seed=cfg.seed + 1, device=device
    )
    store = ResumeStore(
        store_name or f"train_gan/{run_key}",
        resume_fingerprint(run_key, run, arch, fingerprint or {}),
        resume_root,
    )

    def save_generator(step: int) -> None:
        payload = generator_payload(method.generator, method.prior, step=step)
        save_checkpoint(layout.checkpoint_path(step), payload)

    with store, StopRequest() as stop, accel.backends():
        state = store.latest()
        rows: list[dict] = _restore(method, batches, state) if state else []
        step = state["step"] if state else 0
        layout.discard_after(step)
        if state:
            tracker.mark_interrupted(state.get("mlflow_run_id"))
            tracker.set_tags({"ugan.resumed_from_step": step})
            print(f"resuming {run_key} from step {step}", file=sys.stderr)
        retries_left = cfg.nonfinite_retries
        window: dict[str, list[float]] = {}
        # Losses stay on the device until a log / checkpoint step when accel.defer_sync (CUDA):
        # the non-finite guard then fires there at the latest, always before a checkpoint.
        pending = LossBuffer()

        def record(flushed: list[tuple[int, dict[str, float]]]) -> tuple[int, dict] | None:
            """Append flushed steps to the rows and log them; stop at the first non-finite
            one and return (its step, its bad values)."""
            nonlocal window
            for at, values in flushed:
                bad = {k: v for k, v in values.items() if not math.isfinite(v)}
                if bad:
                    return at, bad
                rows.append({"step": at, **{k: f"{v:.6g}" for k, v in values.items()}})
                for key, value in values.items():
                    window.setdefault(key, []).append(value)
                if at % cfg.log_every == 0 or at == cfg.steps:
                    tracker.log_metrics({k: sum(v) / len(v) for k, v in window.items()}, step=at)
                    window = {}
                    shown = {k: f"{values[k]:.3f}" for k in ("d_loss", "g_loss") if k in values}
                    bar.set_postfix(shown, refresh=False)
            return None

        with progress(cfg.steps, f"train_gan@{run_key}") as bar:
            bar.update(step)
            while step < cfg.steps:
                try:
                    stop.check()
                except KeyboardInterrupt:
                    if record(pending.flush()) is None:  # never save a state past a NaN
                        store.save(step, _snapshot(method, batches, rows, tracker.run_id))
                        print(f"stopped at step {step}; state saved for resume", file=sys.stderr)
                    raise
                with accel.autocast():
                    losses = method.train_step(batches.next)
                step += 1
                pending.add(step, losses)
                bar.update(1)
                checkpoint = step % cfg.checkpoint_every == 0 or step == cfg.steps
                if accel.defer_sync and not (checkpoint or step % cfg.log_every == 0):
                    continue
                nonfinite = record(pending.flush())
                if nonfinite is not None:
                    bad_step, bad = nonfinite
                    message = f"run {run_key}: non-finite loss at step {bad_step}: {bad}"
                    previous = store.latest() if retries_left > 0 else None
                    if previous is None:
                        raise NonFiniteLossError(message)
                    retries_left -= 1
                    attempt = cfg.nonfinite_retries - retries_left
                    rows = _restore(method, batches, previous)
                    step = previous["step"]
                    # Same state, other noise: a deterministic replay would hit the same NaN.
                    torch.manual_seed(cfg.seed + 7919 * attempt)
                    warnings.warn(
                        f"{message}; rolled back to step {step}, {retries_left} retries left",
                        stacklevel=1,
                    )
                    tracker.log_metrics({"nonfinite_rollbacks": attempt}, step=step)
                    bar.reset(cfg.steps)
                    bar.update(step)
                    continue
                if checkpoint:
                    save_generator(step)
                    grid = render(sample(method.generator, z_fixed), layout.sample_path(step))
                    tracker.log_artifact(grid, "samples")
                    _write_losses(layout.losses_csv, rows)
                    store.save(step, _snapshot(method, batches, rows, tracker.run_id))

    d = [float(r["d_loss"]) for r in rows]
    g = [float(r["g_loss"]) for r in rows]
    summary = {
        "run": run_key,
        "method": cfg.method,
        "init": run.init,
        "loss": cfg.loss,
        "steps": cfg.steps,
        "d_loss_final": d[-1],
        "g_loss_final": g[-1],
        "checkpoints": layout.checkpoint_steps(),
    }
    atomic_write_json(layout.summary, summary)
    tracker.log_artifact(layout.losses_csv)
    example = noise(2, arch.latent_dim, method.prior, seed=0)
    if arch.num_classes:  # the exported model reads [z, one_hot(y)] as one input
        example = torch.cat(
            [example, one_hot(torch.arange(2) % arch.num_classes, arch.num_classes)], 1
        )
    example = example.numpy()
    tracker.log_torch_model(method.generator, "generator", input_example=example)
    store.clear()  # finished: the next execution of this stage starts fresh
    return summary
