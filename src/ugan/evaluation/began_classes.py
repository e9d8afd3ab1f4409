"""Which real images BEGAN's equilibrium admits: how well an autoencoder discriminator trained on
the real images alone (k_t = 0) reconstructs each class, relative to its mean over the data.

BEGAN holds E[L(G(z))] = γ E[L(x)] (§3.4): at γ < 1 the generator's images must reconstruct γ
times as well as the real ones, so the real distribution itself (ratio 1) is never its
equilibrium. On faces "easier to reconstruct" means smoother faces of any identity; where the
classes differ in how well they reconstruct, it means the easy classes, i.e. fewer modes. A
class whose ratio is above γ can be drawn at the equilibrium only beside easier ones.

The probe trains D as a BEGAN run whose k_t stays at 0 does (on MNIST at γ ≤ 0.5, k_t sat at 0
from step ~500 on): the same nets, optimizer and batch, real images only.
"""

from __future__ import annotations

import numpy as np
import torch

from ugan.core.device import seed_everything
from ugan.data.pixels import to_float
from ugan.methods.began import autoencoder_loss
from ugan.nets.arch import ArchConfig
from ugan.nets.began import BEGANDiscriminator


@torch.no_grad()
def _per_image_l1(discriminator: BEGANDiscriminator, x: torch.Tensor, chunk: int = 500):
    """L(v) of each image: mean |v − D(v)| over its pixels, (N,)."""
    return torch.cat([(v - discriminator(v)).abs().flatten(1).mean(1) for v in x.split(chunk)])


def class_reconstruction(
    images: np.ndarray,
    labels: np.ndarray,
    arch: ArchConfig,
    *,
    steps: int,
    lr: float,
    betas: tuple[float, float],
    batch_size: int,
    seed: int = 0,
) -> dict:
    """Train a BEGAN discriminator on `images` (uint8 (N, C, H, W)) for `steps`, then return
    {"ratio": {class: its mean L(x) ÷ the mean over all images}, "l_real": that mean,
    "blank": L of an all-black image ÷ the mean, "steps": steps}."""
    x = to_float(images)  # [-1, 1], as the pipeline's data
    y = torch.as_tensor(labels)
    seed_everything(seed)
    discriminator = BEGANDiscriminator(arch)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    draw = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = x[torch.randint(len(x), (batch_size,), generator=draw)]
        optimizer.zero_grad(set_to_none=True)
        autoencoder_loss(discriminator, batch).backward()
        optimizer.step()
    discriminator.eval()
    per_image = _per_image_l1(discriminator, x)
    mean = per_image.mean().item()
    blank = _per_image_l1(discriminator, torch.full_like(x[:1], -1.0)).item()
    ratio = {int(c): per_image[y == c].mean().item() / mean for c in torch.unique(y)}
    return {"ratio": ratio, "l_real": mean, "blank": blank / mean, "steps": steps}
