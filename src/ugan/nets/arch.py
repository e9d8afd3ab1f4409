"""The shape of the paper's conv nets as plain data (`ArchConfig`): what params build and a
generator file records. Torch-free, so that config validates params without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ArchConfig:
    image_size: int = 28
    channels: int = 1
    latent_dim: int = 128
    base_channels: int = 64
    leaky_slope: float = 0.2
    dropout: float = 0.25
    num_classes: int = 0  # > 0: class-conditional

    def to_dict(self) -> dict:
        return asdict(self)
