"""Generator files: weights plus what rebuilds the net (its class name in a registry, its
config, its latent prior), so evaluation can load any method's generator the same way."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ugan.checkpoint import load_checkpoint
from ugan.nets.dcgan import ArchConfig, Generator

GENERATORS: dict[str, type[nn.Module]] = {"dcgan": Generator}
PRIORS = ("normal", "uniform")


def register_generator(name: str):
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        GENERATORS[name] = cls
        return cls

    return decorate


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
    generator = GENERATORS[net](ArchConfig(**payload["arch"]))
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


@torch.no_grad()
def sample(generator: nn.Module, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """G(z) with batch statistics, as in training (a GAN generator's BN running averages lag
    far behind its weights; pytorch/examples' DCGAN samples the same way). Restores the mode."""
    was_training = generator.training
    generator.train()
    try:
        return torch.cat([generator(chunk) for chunk in z.split(batch_size)])
    finally:
        generator.train(was_training)
