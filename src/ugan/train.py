"""The GAN training loop: steps, n_critic (inside the method), checkpoint and sample cadence,
per-step losses to CSV and MLflow, and a guard against non-finite losses."""

from __future__ import annotations

import csv
import io
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ugan.checkpoint import atomic_write_json, atomic_write_text, load_checkpoint, save_checkpoint
from ugan.config import ResolvedRun
from ugan.data.batches import InfiniteBatches
from ugan.data.prepared import PreparedData
from ugan.device import seed_everything
from ugan.images import save_grid
from ugan.losses import get_loss
from ugan.methods import GANMethod
from ugan.nets import ArchConfig, Discriminator, Generator, init_weights
from ugan.progress import progress
from ugan.resume import RESUME_ROOT, ResumeStore, StopRequest, capture_rng, restore_rng
from ugan.tracking import StageRun

LOSS_COLUMNS = ("d_loss", "g_loss", "d_real", "d_fake")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the run stops before checkpointing the damage."""


@dataclass(frozen=True)
class RunLayout:
    """Where a run's files live: runs/<key>/…"""

    root: Path

    @property
    def losses_csv(self) -> Path:
        return self.root / "losses.csv"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def summary(self) -> Path:
        return self.root / "train.json"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"generator_step_{step:06d}.pt"

    def discard_after(self, step: int) -> None:
        """Remove checkpoints and grids newer than `step` (all of them for a fresh start):
        the folders persist across DVC reruns so that a resumed run keeps its earlier ones."""
        for folder in (self.checkpoints, self.samples):
            for path in folder.glob("*_[0-9]*.*"):
                if int(path.stem.rsplit("_", 1)[1]) > step:
                    path.unlink()

    def checkpoint_steps(self) -> list[int]:
        return sorted(
            int(p.stem.rsplit("_", 1)[1]) for p in self.checkpoints.glob("generator_step_*.pt")
        )


def generator_payload(generator: Generator, **extra) -> dict:
    """What a generator file holds: weights plus the config that rebuilds the net."""
    return {"state_dict": generator.state_dict(), "arch": generator.cfg.to_dict(), **extra}


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    payload = load_checkpoint(path, map_location=device)
    generator = Generator(ArchConfig(**payload["arch"]))
    generator.load_state_dict(payload["state_dict"])
    return generator.to(device)


@torch.no_grad()
def sample(generator: Generator, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """G(z) with batch statistics, as in training (a GAN generator's BN running averages lag
    far behind its weights; pytorch/examples' DCGAN samples the same way). Restores the mode."""
    was_training = generator.training
    generator.train()
    try:
        return torch.cat([generator(chunk) for chunk in z.split(batch_size)])
    finally:
        generator.train(was_training)


def fixed_noise(count: int, latent_dim: int, seed: int, device: torch.device | str) -> torch.Tensor:
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def _write_losses(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("step", *LOSS_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def build_gan(
    arch: ArchConfig, run: ResolvedRun, generator_init: dict, init_std: float
) -> GANMethod:
    """Discriminator first, from the run's seed, so runs that share a seed share D's init."""
    if generator_init.get("arch") != arch.to_dict():
        differences = {
            key: (generator_init.get("arch", {}).get(key), value)
            for key, value in arch.to_dict().items()
            if generator_init.get("arch", {}).get(key) != value
        }
        raise ValueError(
            f"the generator init was built for another architecture; (init, params) differ at "
            f"{differences}: rerun the stage that wrote it"
        )
    seed_everything(run.gan.seed)
    discriminator = Discriminator(arch)
    init_weights(discriminator, init_std)
    generator = Generator(arch)
    generator.load_state_dict(generator_init["state_dict"])
    optim = run.gan.optim
    return GANMethod(
        generator,
        discriminator,
        get_loss(run.gan.loss),
        lr=optim.lr,
        betas=(optim.beta1, optim.beta2),
        n_critic=run.gan.n_critic,
        clip_value=run.gan.clip_value,
    )


def resume_fingerprint(run_key: str, run: ResolvedRun, arch: ArchConfig, extra: dict) -> dict:
    """What must not change across a resume. Steps, cadences and sample counts may change:
    extending a run is a legitimate resume."""
    free = {"steps", "checkpoint_every", "log_every", "num_sample_images", "nonfinite_retries"}
    gan = {k: v for k, v in run.gan.model_dump().items() if k not in free}
    return {
        "method": "gan",
        "run": run_key,
        "init": run.init,
        "arch": arch.to_dict(),
        **gan,
        **extra,
    }


def _snapshot(method: GANMethod, batches: InfiniteBatches, rows: list[dict], run_id) -> dict:
    return {
        "method": method.state_dict(),
        "batches": batches.state_dict(),
        "rng": capture_rng(),
        "losses": torch.tensor([[float(r[c]) for c in ("step", *LOSS_COLUMNS)] for r in rows]),
        "mlflow_run_id": run_id or "",
    }


def _restore(method: GANMethod, batches: InfiniteBatches, state: dict) -> list[dict]:
    method.load_state_dict(state["method"])
    batches.load_state_dict(state["batches"])
    restore_rng(state["rng"])
    return [
        {
            "step": int(row[0]),
            **{c: f"{v:.6g}" for c, v in zip(LOSS_COLUMNS, row[1:].tolist(), strict=True)},
        }
        for row in state["losses"]
    ]


def train_gan(
    run_key: str,
    run: ResolvedRun,
    arch: ArchConfig,
    data: PreparedData,
    generator_init: dict,
    out_dir: Path,
    tracker: StageRun,
    *,
    init_std: float = 0.02,
    device: torch.device | str = "cpu",
    fingerprint: dict | None = None,
    resume_root: Path = RESUME_ROOT,
) -> dict:
    cfg = run.gan
    layout = RunLayout(Path(out_dir))
    method = build_gan(arch, run, generator_init, init_std)
    method.generator.to(device)
    method.discriminator.to(device)
    images, labels = data.train
    batches = InfiniteBatches(images, labels, cfg.batch_size, seed=cfg.seed, device=device)
    z_fixed = fixed_noise(cfg.num_sample_images, arch.latent_dim, cfg.seed + 1, device)
    store = ResumeStore(
        f"train_gan/{run_key}",
        resume_fingerprint(run_key, run, arch, fingerprint or {}),
        resume_root,
    )

    with store, StopRequest() as stop:
        state = store.latest()
        rows: list[dict] = _restore(method, batches, state) if state else []
        step = state["step"] if state else 0
        layout.discard_after(step)
        if state:
            tracker.mark_interrupted(state.get("mlflow_run_id"))
            tracker.set_tags({"ugan.resumed_from_step": step})
            print(f"resuming {run_key} from step {step}", file=sys.stderr)
        retries_left = cfg.nonfinite_retries
        window: dict[str, list[float]] = {k: [] for k in LOSS_COLUMNS}
        with progress(cfg.steps, f"train_gan@{run_key}") as bar:
            bar.update(step)
            while step < cfg.steps:
                try:
                    stop.check()
                except KeyboardInterrupt:
                    store.save(step, _snapshot(method, batches, rows, tracker.run_id))
                    print(f"stopped at step {step}; state saved for resume", file=sys.stderr)
                    raise
                losses = method.train_step(batches.next)
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                if bad:
                    message = f"run {run_key}: non-finite loss at step {step + 1}: {bad}"
                    previous = store.latest() if retries_left > 0 else None
                    if previous is None:
                        raise NonFiniteLossError(message)
                    retries_left -= 1
                    rows = _restore(method, batches, previous)
                    step = previous["step"]
                    # Same state, other noise: a deterministic replay would hit the same NaN.
                    torch.manual_seed(cfg.seed + 7919 * (cfg.nonfinite_retries - retries_left))
                    warnings.warn(
                        f"{message}; rolled back to step {step}, {retries_left} retries left",
                        stacklevel=1,
                    )
                    tracker.log_metrics(
                        {"nonfinite_rollbacks": cfg.nonfinite_retries - retries_left}, step=step
                    )
                    bar.reset(cfg.steps)
                    bar.update(step)
                    continue
                step += 1
                rows.append({"step": step, **{k: f"{losses[k]:.6g}" for k in LOSS_COLUMNS}})
                for key in LOSS_COLUMNS:
                    window[key].append(losses[key])
                if step % cfg.log_every == 0 or step == cfg.steps:
                    tracker.log_metrics(
                        {k: sum(v) / len(v) for k, v in window.items() if v}, step=step
                    )
                    window = {k: [] for k in LOSS_COLUMNS}
                    bar.set_postfix(
                        d=f"{losses['d_loss']:.3f}", g=f"{losses['g_loss']:.3f}", refresh=False
                    )
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    save_checkpoint(
                        layout.checkpoint_path(step), generator_payload(method.generator, step=step)
                    )
                    grid = save_grid(sample(method.generator, z_fixed), layout.sample_path(step))
                    tracker.log_artifact(grid, "samples")
                    _write_losses(layout.losses_csv, rows)
                    store.save(step, _snapshot(method, batches, rows, tracker.run_id))
                bar.update(1)

    d = [float(r["d_loss"]) for r in rows]
    g = [float(r["g_loss"]) for r in rows]
    summary = {
        "run": run_key,
        "init": run.init,
        "loss": cfg.loss,
        "steps": cfg.steps,
        "d_loss_final": d[-1],
        "g_loss_final": g[-1],
        "checkpoints": layout.checkpoint_steps(),
    }
    atomic_write_json(layout.summary, summary)
    tracker.log_artifact(layout.losses_csv)
    tracker.log_torch_model(
        method.generator,
        "generator",
        input_example=fixed_noise(2, arch.latent_dim, 0, "cpu").numpy(),
    )
    store.clear()  # finished: the next execution of this stage starts fresh
    return summary
