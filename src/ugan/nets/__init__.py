"""Network modules. Generator == VAE decoder (same class); Encoder mirrors the Discriminator."""

from ugan.nets.began import BEGANGenerator  # registers "began" in nets.registry.GENERATORS
from ugan.nets.dcgan import (
    ArchConfig,
    Discriminator,
    Encoder,
    Generator,
    init_weights,
    num_scales,
)

__all__ = [
    "ArchConfig",
    "BEGANGenerator",
    "Discriminator",
    "Encoder",
    "Generator",
    "init_weights",
    "num_scales",
]
