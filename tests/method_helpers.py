"""What the method and trainer tests share: a tiny run of any method, the init payloads the
`init_random` and `transfer` stages write, a batch source, and a tiny tracked `train_gan`."""

from __future__ import annotations

import torch

from ugan.config.load import parse_params
from ugan.data.batches import InfiniteBatches
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan

TINY_GAN = {"steps": 4, "checkpoint_every": 2, "batch_size": 16, "log_every": 1}


def tiny_run(method: str, init: str = "random", **overrides):
    raw = {"gan": TINY_GAN, "runs": {"r": {"init": init, "method": method, **overrides}}}
    return parse_params(raw).run("r")


def random_init(arch) -> dict:
    """What stages/init_random.py writes: a recipe, no weights."""
    return {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}


def vae_init(arch, seed: int = 7) -> dict:
    """Stands in for models/init/vae.pt: a Generator's weights (the transferred decoder)."""
    torch.manual_seed(seed)
    generator = Generator(arch)
    init_weights(generator)
    return generator_payload(generator)


def batches(data, batch_size: int = 16):
    return InfiniteBatches(*data.train, batch_size, seed=0).next


def train_tiny_gan(tmp_path, tiny_arch, tiny_data, overrides=None, key="dcgan", **kw):
    """train_gan of a 20-step run (checkpoints every 5) into tmp_path/out, resuming from
    tmp_path/resume, tracked in the test's MLflow store: its summary."""
    gan = {"steps": 20, "checkpoint_every": 5, "batch_size": 16, **(overrides or {})}
    run = parse_params({"gan": gan}).run(key)
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    with StageRun("train_gan", {}, run_key=key, log_models=False) as tracker:
        return train_gan(
            key,
            run,
            tiny_arch,
            tiny_data,
            generator_payload(g),
            tmp_path / "out",
            tracker,
            resume_root=tmp_path / "resume",
            **kw,
        )
