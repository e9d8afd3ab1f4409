"""The low-capacity Stacked MNIST nets of Unrolled GAN (Metz et al. 2016), which GAAN §4.2
(Table 3) adopts "to be fair": a small generator and two "crippled" discriminators, K/4 and K/2.

As the Unrolled GAN experiment of PacGAN's code reproduces them (fjxmlzn/PacGAN,
`stacked_MNIST_experiments/unrolled_GAN_experiment`, the code behind its Table 2):

- Generator: z (256, N(0, I)) → linear 4·4·64 → batch norm, ReLU → 3×3 transposed convolutions
  with stride 2 to 7×7×32, 14×14×16 and 28×28×8, each with batch norm and ReLU → a 3×3
  convolution with stride 1 to 3 channels, tanh.
- Discriminator: three 3×3 convolutions with stride 2, each with batch norm and LeakyReLU(0.3),
  of `critic_width` × (1, 2, 4) filters (K/4: 2, 4, 8; K/2: 4, 8, 16), then a linear layer to
  one logit (its sigmoid lives in the loss, as in `ugan.nets.dcgan`).

A critic under a gradient penalty takes layer norm instead of batch norm (`norm="layer"`, as
`ugan.nets.dcgan`). The encoders (the VAE's, GAAN's E, RFGAN's DAE) are the discriminator's trunk
with a linear head, so every method of the family runs on these nets. Weights start N(0, 0.02)
as in the DCGAN code both derive from (`ugan.nets.dcgan.init_weights`), or Xavier-uniform as in
the GAAN authors' own Stacked MNIST code (`UnrolledConfig.init`, `init_unrolled`).
"""

from __future__ import annotations

import torch
from torch import nn

from ugan.nets.arch import UnrolledConfig
from ugan.nets.dcgan import (
    Discriminator,
    Encoder,
    LatentEncoder,
    init_weights,
    init_xavier,
    norm_2d,
)

START_SIDE = 4  # the generator's first map: 4×4
SIDES = (4, 7, 14, 28)  # its maps, smallest first; the trunk goes 28 → 14 → 7 → 4
TRUNK_SCALES = 3  # the discriminator's stride-2 convolutions


def init_unrolled(module: nn.Module, std: float, scheme: str = "normal") -> None:
    """`UnrolledConfig.init`: "normal", N(0, std) as the DCGAN code (`init_weights`); "xavier",
    as every layer of the GAAN authors' own Stacked MNIST nets (tntrung/msgan: slim's
    `xavier_initializer`; `init_xavier`)."""
    if scheme == "xavier":
        init_xavier(module)
    else:
        init_weights(module, std)


class UnrolledGenerator(nn.Module):
    """z (N, latent) → image (N, C, 28, 28) in [-1, 1]. Also the VAE / DAE decoder."""

    def __init__(self, cfg: UnrolledConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.generator_widths  # deepest first: 64, 32, 16, 8
        self.start_shape = (widths[0], START_SIDE, START_SIDE)
        # (N, latent) → (N, 64, 4, 4)
        self.project = nn.Linear(cfg.latent_dim, widths[0] * START_SIDE * START_SIDE)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for w_in, w_out, side, target in zip(
            widths[:-1], widths[1:], SIDES[:-1], SIDES[1:], strict=True
        ):
            # (N, w_in, s, s) → (N, w_out, t, t); kernel 3, stride 2, padding 1 give 2s − 1
            layers += [
                nn.ConvTranspose2d(
                    w_in, w_out, 3, stride=2, padding=1, output_padding=target - (2 * side - 1)
                ),
                nn.BatchNorm2d(w_out),
                nn.ReLU(),
            ]
        # (N, 8, 28, 28) → (N, C, 28, 28); no batch norm on the output layer
        layers.append(nn.Conv2d(widths[-1], cfg.channels, 3, stride=1, padding=1))
        self.body = nn.Sequential(*layers)

    def logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-tanh output ((tanh(a) + 1) / 2 = sigmoid(2a): the VAE's BCE uses 2·logits)."""
        return self.body(self.project(z).view(z.shape[0], *self.start_shape))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.logits(z, y))


class UnrolledTrunk(nn.Module):
    """image (N, C, 28, 28) → features (N, 4·width·4·4): the crippled discriminator's body."""

    def __init__(self, cfg: UnrolledConfig, norm: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        w_in = cfg.channels
        for i in range(TRUNK_SCALES):
            w_out = cfg.critic_width * 2**i
            # (N, w_in, s, s) → (N, w_out, ⌈s/2⌉, ⌈s/2⌉)
            layers += [
                nn.Conv2d(w_in, w_out, 3, stride=2, padding=1),
                norm_2d(norm, w_out),
                nn.LeakyReLU(cfg.leaky_slope),
            ]
            w_in = w_out
        self.body = nn.Sequential(*layers)
        self.out_features = w_in * START_SIDE * START_SIDE

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(x).flatten(1)


class UnrolledDiscriminator(Discriminator):
    """image → one logit per sample: the conv family's discriminator on this trunk."""

    def __init__(self, cfg: UnrolledConfig, norm: str = "batch"):
        super().__init__(cfg, norm, trunk=UnrolledTrunk)


class UnrolledGaussianEncoder(Encoder):
    """The VAE's encoder: image → (mu, logvar), each (N, latent)."""

    def __init__(self, cfg: UnrolledConfig):
        super().__init__(cfg, trunk=UnrolledTrunk)


class UnrolledLatentEncoder(LatentEncoder):
    """GAAN's E: image → z (N, latent)."""

    def __init__(self, cfg: UnrolledConfig):
        super().__init__(cfg, trunk=UnrolledTrunk)
