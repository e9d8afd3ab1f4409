"""What the method tests share: a tiny run of any method, the init payloads the `init_random`
and `transfer` stages write, and a batch source."""

from __future__ import annotations

import torch

from ugan.config.load import parse_params
from ugan.data.batches import InfiniteBatches
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload

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
