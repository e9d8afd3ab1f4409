"""Net families: which generator, discriminator and encoders go with a net config.

A method builds its nets through `family_of(cfg)`, so the same method (gan, rfgan, gaan) runs
with the conv nets of the paper on images (`ArchConfig`), with Unrolled GAN's low-capacity
Stacked MNIST nets (`UnrolledConfig`) and with the fully connected nets of GAAN Table 1 on 2-D
points (`MLPConfig`). Every net of a family takes `(input, y=None)`, so a
method calls them the same way whatever the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ugan.nets.arch import ArchConfig, UnrolledConfig
from ugan.nets.dcgan import (
    Discriminator,
    DownTrunk,
    Encoder,
    Generator,
    LatentEncoder,
    init_weights,
)
from ugan.nets.mlp import (
    MLPConfig,
    MLPDiscriminator,
    MLPEncoder,
    MLPGaussianEncoder,
    MLPGenerator,
    data_trunk,
    init_mlp_weights,
)
from ugan.nets.unrolled import (
    UnrolledDiscriminator,
    UnrolledGaussianEncoder,
    UnrolledGenerator,
    UnrolledLatentEncoder,
    UnrolledTrunk,
    init_unrolled,
)


@dataclass(frozen=True)
class NetFamily:
    name: str
    config: type
    generator: Callable[[object], nn.Module]  # z → x; also the VAE / DAE decoder
    # (cfg, norm="batch" | "layer") → x → logit, with `features(x)`; see `critic_norm`
    discriminator: Callable[..., nn.Module]
    trunk: Callable[..., nn.Module]  # (cfg, norm) → x → features (N, out_features): D's body…
    vae_encoder: Callable[[object], nn.Module]  # x → (mu, logvar)
    latent_encoder: Callable[[object], nn.Module]  # x → z (GAAN's E)
    # the family's weight init: (module, std where it applies, the net config)
    init: Callable[[nn.Module, float, object], None]
    # GAAN's reconstruction R and W's data-side f: in D's feature space for images (GAAN §4.2)
    # and in the data space itself for 2-D points (§4.1).
    gaan_feature_space: bool = True


FAMILIES: dict[type, NetFamily] = {
    ArchConfig: NetFamily(
        "dcgan",
        ArchConfig,
        generator=Generator,
        discriminator=Discriminator,
        trunk=DownTrunk,
        vae_encoder=Encoder,
        latent_encoder=LatentEncoder,
        init=lambda module, std, cfg: init_weights(module, std),
    ),
    MLPConfig: NetFamily(
        "mlp",
        MLPConfig,
        generator=MLPGenerator,
        # GAAN Table 1's nets have no normalisation layer: every `norm` is already met.
        discriminator=lambda cfg, norm="batch": MLPDiscriminator(cfg),
        trunk=lambda cfg, norm="batch": data_trunk(cfg),
        vae_encoder=MLPGaussianEncoder,
        latent_encoder=MLPEncoder,
        # the config's scheme (He-normal as in the GAAN authors' code); the conv std does not apply
        init=lambda module, std, cfg: init_mlp_weights(module, cfg.init),
        gaan_feature_space=False,
    ),
    UnrolledConfig: NetFamily(
        "unrolled",
        UnrolledConfig,
        generator=UnrolledGenerator,
        discriminator=UnrolledDiscriminator,
        trunk=UnrolledTrunk,
        vae_encoder=UnrolledGaussianEncoder,
        latent_encoder=UnrolledLatentEncoder,
        init=lambda module, std, cfg: init_unrolled(module, std, cfg.init),
    ),
}


def critic_norm(penalised: bool, chosen: str = "auto") -> str:
    """The normalisation of a discriminator: the run's `critic_norm` unless "auto"; for "auto"
    layer norm when a gradient penalty is taken through it (WGAN-GP, Gulrajani et al. 2017, §4:
    "no critic batch normalization"; batch norm couples the samples of a batch, so ∇_{x_i} D(x_i)
    would not be a per-sample gradient), batch norm otherwise (the Unbalanced GAN paper's nets).
    "none" is the critic of the WGAN-GP and GAAN authors' MNIST code."""
    if chosen != "auto":
        return chosen
    return "layer" if penalised else "batch"


def family_of(cfg: object) -> NetFamily:
    try:
        return FAMILIES[type(cfg)]
    except KeyError:
        known = sorted(f.config.__name__ for f in FAMILIES.values())
        raise ValueError(f"no net family for {type(cfg).__name__}; known: {known}") from None
