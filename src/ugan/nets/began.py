"""BEGAN's nets (Berthelot et al. 2017, §3.5 and Figure 1).

- The discriminator is an autoencoder: encoder image → h, decoder h → image.
- 3×3 convolutions, each followed by an ELU, repeated `REPEAT` = 2 times per scale.
- Down-sampling: a stride-2 3×3 convolution; up-sampling: nearest neighbour ×2.
- Filters grow linearly with each down-sampling: n, 2n, 3n, … (n = `base_channels`).
- Between encoder and decoder, fully connected layers *without* non-linearity map the last
  feature cube to and from the embedding h (dimension `latent_dim`).
- The generator has the decoder's architecture (not its weights); its input z ∈ [-1, 1]^latent.
- No batch norm, no dropout, no transposed convolutions.
- Smallest feature map 8×8 ("constant final down-sampled image size of 8x8"), 7×7 for 28 px
  (28 → 14 → 7), so 28 and 32 px have 2 down-samplings and 64 px has 3.

Choices the paper leaves open, as in the reference implementations: the last convolution of a
decoder has no non-linearity (a tanh saturates on MNIST's black background, where its gradient
vanishes: the discriminator then cannot make a black fake hard to reconstruct, nor the generator
leave it), so samples may leave [-1, 1] slightly and are clamped when turned into images
(`ugan.data.prepared.to_uint8`).

Weights start Xavier (Glorot) uniform with zero biases (`ugan.nets.dcgan.init_xavier`), the
default of the authors' reference code (carpedm20/BEGAN-tensorflow: slim's conv2d /
fully_connected). PyTorch's default init (Kaiming uniform with a = √5, i.e. std 1/√(3 fan_in), a
gain of 1/√3 per layer)
shrinks the signal through the 10+ layers of a decoder without batch norm: a fresh 28 px
generator's per-pixel std across z was ~0.004 on a [-1, 1] scale (a constant image), and its
discriminator's reconstruction did not depend on the input at all. With Xavier it is 0.11-0.24
(tests/test_began.py: the floor 0.05). A normal N(0, 0.02) init starves the stack further.
"""

from __future__ import annotations

import torch
from torch import nn

from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import init_xavier

SMALLEST_MAP = {28: 7, 32: 8, 64: 8}
REPEAT = 2  # 3×3 conv + ELU layers per scale ("typically 2")


def began_scales(image_size: int) -> int:
    """Number of stride-2 down-samplings between the image and the smallest map."""
    if image_size not in SMALLEST_MAP:
        raise ValueError(f"image_size must be one of {sorted(SMALLEST_MAP)}, got {image_size}")
    scales, size = 0, image_size
    while size > SMALLEST_MAP[image_size]:
        size //= 2
        scales += 1
    return scales


def _unconditional(cfg: ArchConfig) -> None:
    if cfg.num_classes:
        raise ValueError(
            "BEGAN's nets are unconditional: set model.conditional: false for method 'began'"
        )


def _convs(width: int) -> list[nn.Module]:
    """`REPEAT` × [(N, width, s, s) → (N, width, s, s) 3×3 conv, ELU]."""
    layers: list[nn.Module] = []
    for _ in range(REPEAT):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ELU()]
    return layers


class BEGANEncoder(nn.Module):
    """image (N, C, H, W) → h (N, latent)."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        _unconditional(cfg)
        n, scales = cfg.base_channels, began_scales(cfg.image_size)
        side = SMALLEST_MAP[cfg.image_size]
        # (N, C, H, W) → (N, n, H, W)
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, n, 3, padding=1), nn.ELU()]
        for i in range(scales + 1):
            width = n * (i + 1)
            layers += _convs(width)  # (N, width, s, s) → (N, width, s, s)
            if i < scales:
                # (N, width, s, s) → (N, width + n, s/2, s/2): sub-sampling by stride 2
                layers += [nn.Conv2d(width, width + n, 3, stride=2, padding=1), nn.ELU()]
        self.body = nn.Sequential(*layers)
        # (N, (scales+1)·n·side·side) → (N, h): no non-linearity
        self.embed = nn.Linear(n * (scales + 1) * side * side, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x).flatten(1))


class BEGANDecoder(nn.Module):
    """h or z (N, latent) → image (N, C, H, W), linear output (data in [-1, 1])."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        _unconditional(cfg)
        n, scales = cfg.base_channels, began_scales(cfg.image_size)
        side = SMALLEST_MAP[cfg.image_size]
        self.start_shape = (n, side, side)
        # (N, latent) → (N, n·side·side): no non-linearity
        self.project = nn.Linear(cfg.latent_dim, n * side * side)
        layers: list[nn.Module] = []
        for i in range(scales + 1):
            layers += _convs(n)  # (N, n, s, s) → (N, n, s, s)
            if i < scales:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))  # s → 2s
        # (N, n, H, W) → (N, C, H, W)
        layers.append(nn.Conv2d(n, cfg.channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(h).view(h.shape[0], *self.start_shape))


class BEGANGenerator(nn.Module):
    """G: z (N, latent) ~ U[-1, 1] → image (N, C, H, W); the decoder's architecture."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder = BEGANDecoder(cfg)
        init_xavier(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("BEGAN's generator is unconditional: it takes no labels")
        return self.decoder(z)


class BEGANDiscriminator(nn.Module):
    """D: image → its reconstruction, an autoencoder (encoder → h → decoder)."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = BEGANEncoder(cfg)
        self.decoder = BEGANDecoder(cfg)
        init_xavier(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
