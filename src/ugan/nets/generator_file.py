"""Generator files: weights plus what rebuilds the net (its class name in `GENERATORS`, its
config, its latent prior), so evaluation can load any method's generator the same way."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ugan.core.io import load_checkpoint
from ugan.nets.began import BEGANGenerator
from ugan.nets.dcgan import ArchConfig, Generator
from ugan.nets.mlp import MLPConfig, MLPGenerator

# The generator classes by the name a generator file records.
GENERATORS: dict[str, type[nn.Module]] = {
    "dcgan": Generator,
    "mlp": MLPGenerator,
    "began": BEGANGenerator,
}
# The config class a generator class is rebuilt from (ArchConfig unless listed).
CONFIGS: dict[type[nn.Module], type] = {MLPGenerator: MLPConfig}
PRIORS = ("normal", "uniform")
# The weights-only generator file train_gan logs beside its MLflow model (artifact folder
# `generator/`): what the registry's champion is safely loaded from.
GENERATOR_FILE = "generator.pt"


def generator_payload(generator: nn.Module, prior: str = "normal", **extra) -> dict:
    name = next((k for k, v in GENERATORS.items() if type(generator) is v), None)
    if name is None:
        raise ValueError(f"{type(generator).__name__} is not a registered generator class")
    return {
        "state_dict": generator.state_dict(),
        "arch": generator.cfg.to_dict(),
        "net": name,
        "prior": prior,
        **extra,
    }


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    payload = load_checkpoint(path, map_location=device)
    net = payload.get("net", "dcgan")
    if net not in GENERATORS:
        raise ValueError(f"{path}: unknown generator class {net!r}; known: {sorted(GENERATORS)}")
    cls = GENERATORS[net]
    generator = cls(CONFIGS.get(cls, ArchConfig)(**payload["arch"]))
    generator.load_state_dict(payload["state_dict"])
    generator.prior = payload.get("prior", "normal")
    return generator.to(device)


def noise(
    count: int,
    latent_dim: int,
    prior: str = "normal",
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """z from the generator's prior: N(0, I), or U(-1, 1) (BEGAN). Seeded → a fixed z."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if prior == "normal":
        z = torch.randn(count, latent_dim, generator=generator)
    elif prior == "uniform":
        z = torch.rand(count, latent_dim, generator=generator) * 2 - 1
    else:
        raise ValueError(f"unknown prior {prior!r}; valid priors are {list(PRIORS)}")
    return z.to(device)


def class_labels(count: int, num_classes: int, device: str | torch.device = "cpu"):
    """Balanced labels 0, 1, …, K−1, 0, 1, … for a conditional generator; None otherwise."""
    if not num_classes:
        return None
    return torch.arange(count, device=device) % num_classes


@torch.no_grad()
def sample(
    generator: nn.Module, z: torch.Tensor, batch_size: int = 500, y: torch.Tensor | None = None
) -> torch.Tensor:
    """G(z[, y]) with batch statistics, as in training (a GAN generator's BN running averages
    lag far behind its weights; pytorch/examples' DCGAN samples the same way). A conditional
    generator without y gets balanced labels. Restores the train/eval mode."""
    classes = getattr(getattr(generator, "cfg", None), "num_classes", 0)
    if classes and y is None:
        y = class_labels(len(z), classes, z.device)
    was_training = generator.training
    generator.train()
    try:
        chunks = zip(
            z.split(batch_size),
            y.split(batch_size) if y is not None else [None] * len(z.split(batch_size)),
            strict=True,
        )
        return torch.cat([generator(zc) if yc is None else generator(zc, yc) for zc, yc in chunks])
    finally:
        generator.train(was_training)
