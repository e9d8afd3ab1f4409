"""A tiny GAN training run in its own process, for fault-injection tests (kill, terminate).

usage: python tiny_trainer.py WORKDIR STEPS
Writes WORKDIR/out (run outputs), WORKDIR/resume (resume state), logs to MLFLOW_TRACKING_URI.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from ugan.config.load import parse_params
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData
from ugan.nets.dcgan import ArchConfig, Generator, init_weights
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan

torch.set_num_threads(1)  # the same thread count in every process: bitwise-equal CPU results


def main(workdir: str, steps: str) -> None:
    work = Path(workdir)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(256, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(256) < 200, TRAIN, HELDOUT).astype(np.uint8)
    data = PreparedData(images, np.arange(256) % 10, split, {})
    arch = ArchConfig(latent_dim=16, base_channels=16)
    torch.manual_seed(0)
    generator = Generator(arch)
    init_weights(generator)
    params = parse_params(
        {"gan": {"steps": int(steps), "checkpoint_every": 10, "batch_size": 32, "log_every": 5}}
    )
    run = params.run("dcgan")
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
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
