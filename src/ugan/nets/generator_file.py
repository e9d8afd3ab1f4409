"""Generator files: weights plus what rebuilds the net (its class name in `GENERATORS`, its
config, its latent prior), so evaluation can load any method's generator the same way."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ugan.core.checkpoint_io import describe_mismatches, load_checkpoint, state_mismatches
from ugan.core.errors import CheckpointError
from ugan.nets.arch import ArchConfig, UnrolledConfig
from ugan.nets.began import BEGANGenerator
from ugan.nets.dcgan import Generator
from ugan.nets.mlp import MLPConfig, MLPGenerator
from ugan.nets.unrolled import UnrolledGenerator

# The generator classes by the name a generator file records.
GENERATORS: dict[str, type[nn.Module]] = {
    "dcgan": Generator,
    "mlp": MLPGenerator,
    "began": BEGANGenerator,
    "unrolled": UnrolledGenerator,
}
# The config class a generator class is rebuilt from (ArchConfig unless listed).
CONFIGS: dict[type[nn.Module], type] = {
    MLPGenerator: MLPConfig,
    UnrolledGenerator: UnrolledConfig,
}
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
    """The generator a generator file describes. A file that is no generator file (no `arch`
    or `state_dict`), names an unknown class or config, or whose weights do not fit the net its
    `arch` describes is a `CheckpointError` naming the file (and the tensors that differ)."""
    payload = load_checkpoint(path, map_location=device)
    net = payload.get("net", "dcgan")
    if net not in GENERATORS:
        raise CheckpointError(
            f"{path}: unknown generator class {net!r}; known: {sorted(GENERATORS)}"
        )
    missing = [key for key in ("arch", "state_dict") if not isinstance(payload.get(key), dict)]
    if missing:
        raise CheckpointError(
            f"{path}: not a generator file: no {' or '.join(map(repr, missing))} in it (it "
            f"holds {sorted(map(str, payload))}); generator files are written by train_gan"
        )
    cls = GENERATORS[net]
    config = CONFIGS.get(cls, ArchConfig)
    try:
        generator = cls(config(**payload["arch"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: its `arch` {payload['arch']} is no {config.__name__} of a {net} "
            f"generator: {exc}"
        ) from exc
    mismatches = state_mismatches(payload["state_dict"], generator.state_dict())
    if mismatches:
        raise CheckpointError(
            f"{path}: its weights do not fit the {net} generator its `arch` describes "
            f"({describe_mismatches(mismatches)}): the file is corrupt or was assembled from "
            f"another architecture's weights"
        )
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
