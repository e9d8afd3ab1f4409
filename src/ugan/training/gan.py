"""A GAN run: its method (from `ugan.methods.table`), trained by the one loop
(`ugan.training.loop`); per-step losses to losses.csv, generator checkpoints and sample grids at
the checkpoint cadence, a summary and the generator as an MLflow model at the end.
What one step does (D / G updates, n_critic, penalties) belongs to the method; the weight average
of `gan.ema` (`ugan.training.ema`) belongs to the run, the same for every method: updated after
each step, saved beside each checkpoint and in the resume state, and logged as the model."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ugan.config.schema import LRDecay, PerfParams, ResolvedRun
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import InputError
from ugan.core.io import atomic_write_json, atomic_write_text
from ugan.core.paths import RESUME_ROOT, RunLayout
from ugan.data.batches import InfiniteBatches
from ugan.data.images import save_grid
from ugan.data.prepared import PreparedData
from ugan.methods.table import get_method
from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import one_hot
from ugan.nets.generator_file import GENERATOR_FILE, generator_payload, noise, sample
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import Accel, numeric_identity, optimizers_of
from ugan.training.ema import GeneratorEMA
from ugan.training.loop import Schedule, Task, run_loop
from ugan.training.resume import ResumeStore


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


def resume_fingerprint(
    run_key: str,
    run: ResolvedRun,
    arch: ArchConfig,
    extra: dict,
    *,
    perf: PerfParams | None = None,
    device: torch.device | str = "cpu",
) -> dict:
    """What must not change across a resume: the run's params, the device type and the perf
    keys that change its numbers (`ugan.training.accel.numeric_identity`: a bf16 state does not
    resume in fp32). Steps, cadences and sample counts may change: extending a run is a
    legitimate resume; so may perf keys that change only speed (compile, channels_last…)."""
    free = {"steps", "checkpoint_every", "log_every", "num_sample_images", "nonfinite_retries"}
    gan = {k: v for k, v in run.gan.model_dump().items() if k not in free}
    return {
        "run": run_key,
        "init": run.init,
        "arch": arch.to_dict(),
        **gan,
        **numeric_identity(perf, device),
        **extra,
    }


class StepDecay:
    """`gan.lr_decay` on a method's optimizers: lr = initial lr × rate^⌊done / every⌋ before
    each step. The initial lr is kept in each param group (`initial_lr`, torch's own key), so
    it travels with the optimizer's state through a resume."""

    def __init__(self, decay: LRDecay, optimizers) -> None:
        self.decay, self.optimizers = decay, list(optimizers)
        for group in self._groups():
            group.setdefault("initial_lr", group["lr"])

    def _groups(self):
        # read through the optimizers each time: loading a state replaces their group dicts
        return (group for optimizer in self.optimizers for group in optimizer.param_groups)

    def apply(self, done: int) -> None:
        factor = self.decay.rate ** (done // self.decay.every)
        for group in self._groups():
            group["lr"] = group["initial_lr"] * factor


class GANTask(Task):
    """A method in the loop. Its part of the resume state is the method's state, the loss
    rows so far (losses.csv is rewritten from them at each checkpoint) and, with `ema`, the
    generator's weight average (updated after every step, saved beside each checkpoint)."""

    def __init__(
        self, run_key, method, layout: RunLayout, tracker, render, z_fixed, ema=None, decay=None
    ) -> None:
        self.name = f"train_gan@{run_key}"
        self.method, self.layout, self.tracker = method, layout, tracker
        self.render, self.z_fixed = render, z_fixed
        self.ema: GeneratorEMA | None = ema
        self.decay: StepDecay | None = decay
        self.rows: list[dict] = []

    def before_step(self, done: int) -> None:
        if self.decay is not None:
            self.decay.apply(done)

    def train_step(self, next_batch):
        losses = self.method.train_step(next_batch)
        if self.ema is not None:
            self.ema.update(self.method.generator)
        return losses

    def state_dict(self) -> dict:
        columns = list(self.rows[0]) if self.rows else []
        losses = [[float(r[c]) for c in columns] for r in self.rows]
        ema = {"ema": self.ema.state_dict()} if self.ema is not None else {}
        return {
            "method": self.method.state_dict(),
            "loss_columns": columns,
            "losses": torch.tensor(losses, dtype=torch.float64),
            **ema,
        }

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        columns = state["loss_columns"]
        self.rows = [
            {
                "step": int(row[0]),
                **{c: f"{v:.6g}" for c, v in zip(columns[1:], row[1:], strict=True)},
            }
            for row in state["losses"].tolist()
        ]

    def on_start(self, step: int) -> None:
        self.layout.discard_after(step)

    def on_record(self, step: int, losses: dict[str, float]) -> None:
        self.rows.append({"step": step, **{k: f"{v:.6g}" for k, v in losses.items()}})

    def postfix(self, averages: dict[str, float], losses: dict[str, float]) -> dict[str, str]:
        return {k: f"{losses[k]:.3f}" for k in ("d_loss", "g_loss") if k in losses}

    def on_save(self, step: int) -> None:
        generator = self.method.generator
        save_checkpoint(
            self.layout.checkpoint_path(step),
            generator_payload(generator, self.method.prior, step=step),
        )
        if self.ema is not None:
            save_checkpoint(
                self.layout.ema_checkpoint_path(step),
                generator_payload(self.ema.generator, self.method.prior, step=step, ema=True),
            )
        grid = self.render(sample(generator, self.z_fixed), self.layout.sample_path(step))
        self.tracker.log_artifact(grid, "samples")
        _write_losses(self.layout.losses_csv, self.rows)


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
    accel = Accel.from_params(perf, device)  # before any CUDA work (deterministic cuBLAS)
    method = build_method(arch, run, generator_init, init_std, resources)
    method.to(device)
    # the average: a plain copy of G, before compile / channels_last / data-parallel wrapping
    ema = None if cfg.ema is None else GeneratorEMA(method.generator, cfg.ema)
    images, labels = data.train
    batches = InfiniteBatches(images, labels, cfg.batch_size, seed=cfg.seed, device=device)
    method = accel.prepare(method, batches)
    # the optimizers as prepared (fused), before a data-parallel wrapper hides them
    decay = (
        None if cfg.lr_decay is None else StepDecay(cfg.lr_decay, optimizers_of(method).values())
    )
    if wrap is not None:
        method = wrap(method, batches)
    z_fixed = noise(
        cfg.num_sample_images, arch.latent_dim, method.prior, seed=cfg.seed + 1, device=device
    )
    store = ResumeStore(
        store_name or f"train_gan/{run_key}",
        resume_fingerprint(run_key, run, arch, fingerprint or {}, perf=perf, device=device),
        resume_root,
    )

    task = GANTask(run_key, method, layout, tracker, render, z_fixed, ema, decay)
    schedule = Schedule(
        cfg.steps, cfg.log_every, cfg.checkpoint_every, cfg.nonfinite_retries, cfg.seed
    )
    run_loop(task, batches, store, tracker, schedule, label=run_key, accel=accel)

    last = task.rows[-1]
    summary = {
        "run": run_key,
        "method": cfg.method,
        "init": run.init,
        "loss": cfg.loss,
        "steps": cfg.steps,
        "d_loss_final": float(last["d_loss"]),
        "g_loss_final": float(last["g_loss"]),
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
    # With EMA on, the average is the run's model: logged, and what the champion loads.
    model = method.generator if ema is None else ema.generator
    tracker.log_torch_model(model, "generator", input_example=example)
    if tracker.log_models:  # beside it, the weights-only file the champion is safely loaded from
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / GENERATOR_FILE
            marks = {"step": cfg.steps} | ({"ema": True} if ema is not None else {})
            save_checkpoint(weights, generator_payload(model, method.prior, **marks))
            tracker.log_artifact(weights, "generator")
    store.clear()  # finished: the next execution of this stage starts fresh
    return summary
