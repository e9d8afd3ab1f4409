"""The VAE of paper §2.1 / Algorithm 1, whose decoder *is* a `Generator`.

Loss (eq. 2): pixel-wise BCE reconstruction + KL(q(z|x) || N(0, I)), both summed over a
sample's dimensions and averaged over the batch. The decoder ends in tanh (as the generator
must); since (tanh(a) + 1) / 2 = sigmoid(2a), the BCE is taken on logits 2a against targets
(x + 1) / 2, which is exact and numerically stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ugan.nets.family import family_of


@dataclass
class VAELoss:
    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


class VAE(nn.Module):
    def __init__(self, cfg, init_std: float = 0.02):
        super().__init__()
        nets = family_of(cfg)  # conv nets for images, MLPs for 2-D points
        self.cfg = cfg
        self.encoder = nets.vae_encoder(cfg)
        self.decoder = nets.generator(cfg)
        nets.init(self, init_std, cfg)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x in [-1, 1] (labels y when conditional) → (decoder logits, mu, logvar), z drawn
        by reparameterisation."""
        mu, logvar = self.encoder(x, y)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder.logits(z, y), mu, logvar


def vae_loss(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> VAELoss:
    """x in [-1, 1]; logits are the decoder's pre-tanh outputs."""
    batch = x.shape[0]
    target = (x + 1.0) / 2.0
    recon = F.binary_cross_entropy_with_logits(2.0 * logits, target, reduction="sum") / batch
    kl = -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp()) / batch
    return VAELoss(total=recon + kl, recon=recon, kl=kl)
