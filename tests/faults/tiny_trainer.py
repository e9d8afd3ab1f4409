"""A tiny GAN training run in its own process, for fault-injection tests (kill, terminate).

usage: python tiny_trainer.py WORKDIR STEPS [CHECKPOINT_EVERY [PAUSE_AT]]
Writes WORKDIR/out (run outputs), WORKDIR/resume (resume state), logs to MLFLOW_TRACKING_URI.
PAUSE_AT=k is the tests' rendezvous: at the start of training step k the run writes
WORKDIR/paused and waits for WORKDIR/go, so a test signals it at a known step however fast the
machine trains.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from ugan.config.load import parse_params
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData
from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan

torch.set_num_threads(1)  # the same thread count in every process: bitwise-equal CPU results


class PauseAt:
    """The `wrap` hook of train_gan: the method itself, pausing before its `step`-th step."""

    def __init__(self, method, step: int, work: Path) -> None:
        self.method, self.step, self.work, self.calls = method, step, work, 0

    def __getattr__(self, name: str):
        return getattr(self.method, name)

    def train_step(self, next_batch):
        self.calls += 1
        if self.calls == self.step:
            (self.work / "paused.tmp").write_text(str(self.step))
            (self.work / "paused.tmp").rename(self.work / "paused")
            deadline = time.monotonic() + 300
            while not (self.work / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # a signal's handler runs meanwhile; the step follows
        return self.method.train_step(next_batch)


def main(workdir: str, steps: str, checkpoint_every: str = "10", pause_at: str = "") -> None:
    work = Path(workdir)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(256, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(256) < 200, TRAIN, HELDOUT).astype(np.uint8)
    data = PreparedData(images, np.arange(256) % 10, split, {})
    arch = ArchConfig(latent_dim=16, base_channels=16)
    torch.manual_seed(0)
    generator = Generator(arch)
    init_weights(generator)
    gan = {
        "steps": int(steps),
        "checkpoint_every": int(checkpoint_every),
        "batch_size": 32,
        "log_every": 5,
    }
    run = parse_params({"gan": gan}).run("dcgan")
    work.mkdir(parents=True, exist_ok=True)
    wrap = (lambda method, batches: PauseAt(method, int(pause_at), work)) if pause_at else None
    with StageRun(
        "train_gan", {"gan": run.gan.model_dump()}, run_key="dcgan", log_models=False
    ) as t:
        train_gan(
            "dcgan",
            run,
            arch,
            data,
            generator_payload(generator),
            work / "out",
            t,
            resume_root=work / "resume",
            wrap=wrap,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
