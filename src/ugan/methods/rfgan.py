"""RFGAN (Bang & Shim 2018): a GAN whose discriminator also sees representative features.

The denoising autoencoder of `ugan.models.dae` is pre-trained in its own stage and then frozen. The
discriminator concatenates its own last features h2 (a trainable `DownTrunk`) with the frozen
encoder's features h1 of the same input and maps [h2, h1] to one logit with a linear layer
(§3.1, Figure 1: Y = σ(h1 w1 + h2 w2)). Gradients flow *through* the encoder to its input (so the
generator learns from both kinds of features, and gradient penalties see the whole critic), but
never into its parameters, which stay fixed and in eval mode.

Any loss of the registry applies (the paper: ns, lsgan, dragan, wgan-gp); its penalty, if any,
is taken on the whole discriminator (its trunk then has layer norm, not batch norm:
`ugan.nets.family.critic_norm`), weight clipping (wgan) on the trainable part only. One step
is `n_critic` discriminator updates followed by `rfgan.g_updates` generator updates (the
reference code: 1 and 2; WGAN-GP: 5 and 1).

The generator is the family's generator (`ugan.nets.family`), from the run's init file (random
recipe or the transferred VAE decoder), so RFGAN has an unbalanced variant. RFGAN is `GANMethod`
with another discriminator: only how D is made, which of its parameters train, and `g_updates`
differ.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ugan.core.errors import ResumeMismatchError
from ugan.core.paths import DAE_PATH
from ugan.methods.gan import GANMethod
from ugan.models.dae import load_frozen_encoder
from ugan.nets.family import critic_norm, family_of


class RFDiscriminator(nn.Module):
    """x → one logit per sample, from [h2 (trainable trunk), h1 (frozen DAE encoder)]."""

    def __init__(self, cfg, encoder: nn.Module, norm: str = "batch"):
        super().__init__()
        self.cfg = cfg
        # x → (N, F): discriminative features h2; `norm` "layer" under a gradient penalty (the
        # frozen encoder's batch norm runs on its stored statistics: per sample already)
        self.trunk = family_of(cfg).trunk(cfg, norm=norm)
        self.encoder = encoder.requires_grad_(False).eval()  # x → (N, F_e): h1
        # (N, F + F_e) → (N, 1)
        self.head = nn.Linear(self.trunk.out_features + encoder.out_features, 1)

    def train(self, mode: bool = True) -> RFDiscriminator:
        super().train(mode)
        self.encoder.eval()  # fixed features: no dropout, the DAE's batch-norm statistics
        return self

    def trainable(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.head.parameters()]

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([self.trunk(x, y), self.encoder(x, y)], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y)).squeeze(1)


class RFGANMethod(GANMethod):
    prior = "normal"

    @classmethod
    def discriminator_maker(cls, arch, run, resources: dict) -> Callable[[float], nn.Module]:
        encoder = load_frozen_encoder(Path(resources.get("dae_path", DAE_PATH)), arch)
        nets = family_of(arch)
        norm = critic_norm(cls.penalised(run), run.gan.critic_norm)

        def make(init_std: float) -> RFDiscriminator:
            discriminator = RFDiscriminator(arch, encoder, norm)
            nets.init(discriminator.trunk, init_std, arch)
            nets.init(discriminator.head, init_std, arch)
            return discriminator

        return make

    @classmethod
    def options(cls, run) -> dict:
        return {**super().options(run), "g_updates": run.gan.rfgan.g_updates}

    def __init__(self, *args, g_updates: int = 2, **kwargs):
        self.g_updates = g_updates
        super().__init__(*args, **kwargs)

    def d_parameters(self) -> list[nn.Parameter]:
        return self.discriminator.trainable()

    def load_state_dict(self, state: dict) -> None:
        saved = state["discriminator"]
        for key, value in self.discriminator.encoder.state_dict().items():
            if not torch.equal(saved[f"encoder.{key}"].to(value.device), value):
                raise ResumeMismatchError(
                    "the saved state was trained with another DAE encoder than the one in "
                    "models/dae.pt (pretrain_dae ran since); start the run afresh "
                    "(UGAN_FRESH_START=1)"
                )
        super().load_state_dict(state)
