"""Fully connected nets for the 2-D Gaussian mixtures (GAAN §4.1, Table 1).

GAAN Table 1 ("network structures used for evaluating on synthetic data"):

    net               d_in  d_out  N_h  d_h
    Encoder (E)        2     2     3   128
    Generator (G)      2     2     3   128
    Discriminator (D)  2     1     3   128

i.e. N_h = 3 hidden layers of d_h = 128 units; ReLU after the input and hidden layers and a
sigmoid on the output layers (§4.1); a 2-d latent with the uniform prior on [−1, 1]. `MLPConfig`
holds these numbers as defaults. The generator's output activation is a choice
(`output`: identity, sigmoid or tanh): "sigmoid" as in the paper expects the data mapped to [0, 1]
(`ugan.data.toy.GaussianMixture2D.to_unit`), "identity" generates mixture coordinates directly.
The discriminator returns a logit: its sigmoid lives in the loss (BCE with logits), as in
`ugan.nets.dcgan.Discriminator`. The encoder returns z itself (the reference code uses E's
pre-sigmoid output as the latent), and `MLPGaussianEncoder` is the VAE encoder twin of the
generator, (mu, logvar), for the unbalanced initialisation.

Weights start He-normal (std √(2 / fan_in)) with zero biases, as in the GAAN authors' code
(tntrung/gan, `gaan_toy2d/model_mlp.py`, `xavier_init` with std 1/√(fan_in / 2)); `init:
orthogonal` is Unrolled GAN's (Metz et al. 2016, App. A: "orthogonal with scaling of 0.8"),
whose discriminator also "first scales its input down by a factor of 4" (`input_scale`: D and
the encoders multiply their input by it; G's input, z, is never scaled).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

OUTPUTS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


@dataclass(frozen=True)
class MLPConfig:
    data_dim: int = 2  # d_in of D and E, d_out of G
    latent_dim: int = 2  # d_in of G, d_out of E
    hidden_dim: int = 128  # d_h
    hidden_layers: int = 3  # N_h of D and the encoders
    generator_layers: int | None = None  # N_h of G (and the VAE's decoder); None: hidden_layers
    output: str = "sigmoid"  # the generator's output activation, a key of OUTPUTS
    num_classes: int = 0  # the MLP nets are unconditional (the methods read this field)
    init: str = "he"  # the weight init, a key of INITS
    input_scale: float = 1.0  # D's and the encoders' input × this, before their first layer

    def __post_init__(self) -> None:
        if self.generator_layers is None:  # frozen: set once, before anything reads it
            object.__setattr__(self, "generator_layers", self.hidden_layers)
        if self.num_classes != 0:
            raise ValueError(f"MLPConfig.num_classes must be 0, got {self.num_classes!r}")
        for key in ("data_dim", "latent_dim", "hidden_dim", "hidden_layers", "generator_layers"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPConfig.{key} must be a positive integer, got {value!r}")
        for key, table in (("output", OUTPUTS), ("init", INITS)):
            if getattr(self, key) not in table:
                raise ValueError(
                    f"MLPConfig.{key} must be one of {sorted(table)}, got {getattr(self, key)!r}"
                )
        if not self.input_scale > 0:
            raise ValueError(f"MLPConfig.input_scale must be > 0, got {self.input_scale!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _he_normal(weight: torch.Tensor) -> None:
    nn.init.normal_(weight, 0.0, math.sqrt(2.0 / weight.shape[1]))


def _orthogonal(weight: torch.Tensor) -> None:
    nn.init.orthogonal_(weight, gain=0.8)  # Unrolled GAN App. A's scaling


INITS: dict[str, Callable[[torch.Tensor], None]] = {"he": _he_normal, "orthogonal": _orthogonal}


def init_mlp_weights(module: nn.Module, scheme: str = "he") -> None:
    """Weights by `scheme` (a key of INITS) and zero biases on every Linear layer."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            INITS[scheme](m.weight)
            nn.init.zeros_(m.bias)


class MLPTrunk(nn.Sequential):
    """(N, d_in) → (N, d_h): N_h layers of Linear + ReLU. Takes (and ignores) labels like the
    conv `DownTrunk`, so methods call either family's nets the same way."""

    def __init__(
        self, d_in: int, cfg: MLPConfig, hidden_layers: int | None = None, scale: float = 1.0
    ):
        layers: list[nn.Module] = []
        width = d_in
        for _ in range(cfg.hidden_layers if hidden_layers is None else hidden_layers):
            # (N, width) → (N, d_h)
            layers += [nn.Linear(width, cfg.hidden_dim), nn.ReLU()]
            width = cfg.hidden_dim
        super().__init__(*layers)
        self.out_features = cfg.hidden_dim
        self.scale = scale  # the input's factor (1: as it is)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x if self.scale == 1.0 else x * self.scale)


def hidden_stack(d_in: int, cfg: MLPConfig, hidden_layers: int | None = None) -> MLPTrunk:
    """G's trunk (on z, as it is)."""
    return MLPTrunk(d_in, cfg, hidden_layers)


def data_trunk(cfg: MLPConfig) -> MLPTrunk:
    """The trunk of D and of the encoders: data points, scaled by `input_scale` first."""
    return MLPTrunk(cfg.data_dim, cfg, scale=cfg.input_scale)


class MLPGenerator(nn.Module):
    """z (N, latent) → x (N, data_dim). Also the decoder of the 2-D VAE."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        # (N, latent) → (N, d_h)
        self.trunk = hidden_stack(cfg.latent_dim, cfg, cfg.generator_layers)
        self.head = nn.Linear(cfg.hidden_dim, cfg.data_dim)  # (N, d_h) → (N, data_dim)
        self.activation = OUTPUTS[cfg.output]()
        init_mlp_weights(self, cfg.init)

    def logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The output layer before its activation, (N, data_dim)."""
        return self.head(self.trunk(z))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.activation(self.logits(z))


class MLPDiscriminator(nn.Module):
    """x (N, data_dim) → one logit per sample (N,); `features` is the last hidden layer."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.trunk = data_trunk(cfg)  # (N, data_dim) → (N, d_h)
        self.head = nn.Linear(cfg.hidden_dim, 1)  # (N, d_h) → (N, 1)
        self.out_features = cfg.hidden_dim
        init_mlp_weights(self, cfg.init)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N, data_dim) → (N, d_h): Φ(x) of GAAN, the input of the output layer."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(x)).squeeze(1)


class MLPEncoder(nn.Module):
    """x (N, data_dim) → z (N, latent): GAAN's deterministic encoder E."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.trunk = data_trunk(cfg)  # (N, data_dim) → (N, d_h)
        self.head = nn.Linear(cfg.hidden_dim, cfg.latent_dim)  # (N, d_h) → (N, latent)
        init_mlp_weights(self, cfg.init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(x))


class MLPGaussianEncoder(nn.Module):
    """x (N, data_dim) → (mu, logvar), each (N, latent): the VAE encoder for `MLPGenerator`."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.trunk = data_trunk(cfg)  # (N, data_dim) → (N, d_h)
        self.head = nn.Linear(cfg.hidden_dim, 2 * cfg.latent_dim)  # (N, d_h) → (N, 2·latent)
        init_mlp_weights(self, cfg.init)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.trunk(x)).chunk(2, dim=1)
        return mu, logvar
