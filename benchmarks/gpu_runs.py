"""How the runs of benchmarks/gpu_matrix.py are set up: the `perf:` presets, the tiny nets and
data, the log / checkpoint cadence, a run's resolved `gan:` params, a tracker that records
nothing, and the DAE file RFGAN needs. Shared by the matrix's cells (gpu_matrix.py) and the
checks beside them (gpu_audits.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from common import mnist

from ugan.config.load import parse_params
from ugan.config.schema import PerfParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.data.prepared import TRAIN, PreparedData
from ugan.models.dae import DenoisingAE
from ugan.nets.arch import ArchConfig

# `perf:` presets (src/ugan/training/accel.py), as a user writes them
PRESETS: dict[str, dict] = {
    "default": {},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "deterministic": {"deterministic": True},
    "bf16+channels_last+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
TINY_ARCH = ArchConfig(image_size=28, channels=1, latent_dim=16, base_channels=8)
TRAIN_IMAGES = 512  # 8 batches of 64 per epoch: epochs roll over inside the audited steps


def cadence(steps: int) -> tuple[int, int]:
    """(log_every, checkpoint_every) of a cell of `steps` steps: two checkpoints, four logs."""
    if steps < 4:
        raise ValueError(f"a cell needs at least 4 steps (two checkpoints), got {steps}")
    return max(2, steps // 4), steps // 2


def cadence_steps(steps: int) -> set[int]:
    """The log and checkpoint steps of a cell: where the loop reads losses back and saves."""
    log_every, checkpoint_every = cadence(steps)
    return {
        step
        for step in range(1, steps + 1)
        if step % log_every == 0 or step % checkpoint_every == 0 or step == steps
    }


class NullTracker:
    """train_gan's tracker without an MLflow store (real tracking is gpu_check's dvc repro)."""

    log_models = False
    run_id = None

    def __init__(self) -> None:
        self.logged_steps: list[int | None] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.logged_steps.append(step)

    def log_artifact(self, path, artifact_path=None) -> None:
        pass

    def log_torch_model(self, model, name, input_example) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

    def mark_interrupted(self, run_id) -> None:
        pass


def finish_row(row: dict, problems: list[str], started: float) -> dict:
    """A check's row, closed: ok when nothing went wrong, its seconds, the problems joined."""
    return row | {
        "ok": not problems,
        "seconds": round(time.perf_counter() - started, 1),
        "error": " | ".join(problems),
    }


def random_recipe(arch: ArchConfig) -> dict:
    return {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}


def resolved_run(method: str, loss: str | None, steps: int, batch_size: int, **gan):
    log_every, checkpoint_every = cadence(steps)
    raw = {
        "steps": steps,
        "batch_size": batch_size,
        "log_every": log_every,
        "checkpoint_every": checkpoint_every,
        "num_sample_images": batch_size,  # a compiled generator sees one batch shape
        **gan,
    }
    run = {"init": "random", "method": method, **({"loss": loss} if loss else {})}
    return parse_params({"gan": raw, "runs": {"cell": run}}).run("cell")


def perf_of(preset: str, device: torch.device) -> PerfParams:
    """The preset; on the CPU with losses deferred to the log cadence (`auto` on CUDA), so that
    the audit sees what a CUDA run does."""
    base = {"loss_sync": "log"} if device.type == "cpu" else {}
    return PerfParams(**(base | PRESETS[preset]))


@contextlib.contextmanager
def env_without(name: str) -> Iterator[None]:
    """`name` unset for a while: a caller's UGAN_FRESH_START would change what resumes."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def matrix_data(train_images: int = TRAIN_IMAGES) -> PreparedData:
    """The embedded MNIST-5k (no download): `train_images` of its training split (short epochs),
    all of its held-out split (the FID reference)."""
    full = mnist(28)
    train = np.flatnonzero(full.split == TRAIN)[:train_images]
    keep = np.sort(np.concatenate([train, np.flatnonzero(full.split != TRAIN)]))
    return PreparedData(full.images[keep], full.labels[keep], full.split[keep], full.metadata)


def make_dae(arch: ArchConfig, path: Path, seed: int = 3) -> Path:
    """RFGAN's frozen encoder file, from an untrained DAE (what matters here is the path)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dae = DenoisingAE(arch)
    save_checkpoint(path, {"encoder": dae.encoder.state_dict(), "arch": arch.to_dict()})
    return path
