"""The shape of the paper's conv nets as plain data (`ArchConfig`): what params build and a
generator file records. Torch-free, so that config validates params without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class _Image:
    """Shared by the image nets' configs (each with `channels` and an `image_size`)."""

    @property
    def data_dim(self) -> int:
        """Numbers in one image (GAAN's λ_w = √(d / D) when R is in the data space)."""
        return self.channels * self.image_size**2


@dataclass(frozen=True)
class ArchConfig(_Image):
    image_size: int = 28
    channels: int = 1
    latent_dim: int = 128
    base_channels: int = 64
    leaky_slope: float = 0.2
    dropout: float = 0.25
    num_classes: int = 0  # > 0: class-conditional

    def to_dict(self) -> dict:
        return asdict(self)


# Unrolled GAN's crippled discriminators by name (Metz et al. 2016; GAAN Table 3): the width of
# their first convolution (K/4: 2, 4, 8 filters; K/2: 4, 8, 16).
CRITIC_WIDTHS = {"K/4": 2, "K/2": 4}
# a Stacked MNIST benchmark's `nets` → the critic of Unrolled GAN's nets it names
UNROLLED_NETS = {"unrolled-k4": "K/4", "unrolled-k2": "K/2"}


@dataclass(frozen=True)
class UnrolledConfig(_Image):
    """Unrolled GAN's low-capacity Stacked MNIST nets (`ugan.nets.unrolled`)."""

    channels: int = 3
    latent_dim: int = 256
    critic_width: int = CRITIC_WIDTHS["K/4"]
    generator_widths: tuple[int, ...] = (64, 32, 16, 8)  # from the 4×4 map to the 28×28 one
    leaky_slope: float = 0.3
    num_classes: int = 0  # unconditional (the methods read this field)
    init: str = "normal"  # N(0, std) or "xavier" (`ugan.nets.unrolled.init_unrolled`)

    def __post_init__(self) -> None:
        # a generator file's arch comes back from JSON / torch.load with a list
        object.__setattr__(self, "generator_widths", tuple(self.generator_widths))
        if len(self.generator_widths) != 4:
            raise ValueError(
                f"UnrolledConfig.generator_widths needs 4 widths (4, 7, 14 and 28 px), got "
                f"{self.generator_widths!r}"
            )
        if self.num_classes != 0:
            raise ValueError(f"UnrolledConfig.num_classes must be 0, got {self.num_classes!r}")
        if self.init not in ("normal", "xavier"):
            raise ValueError(f"UnrolledConfig.init must be 'normal' or 'xavier', got {self.init!r}")

    @property
    def image_size(self) -> int:
        return 28  # Unrolled GAN's Stacked MNIST nets are for 28 px only

    def to_dict(self) -> dict:
        return {**asdict(self), "generator_widths": list(self.generator_widths)}
