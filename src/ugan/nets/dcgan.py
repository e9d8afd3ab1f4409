"""DCGAN-style nets of the Unbalanced GAN paper (§3.3, §4.1).

- 3×3 convolutions with stride 2 down, 3×3 transposed convolutions with stride 2 up.
- Generator / decoder: LeakyReLU(0.2) hidden, tanh output, batch norm everywhere but the output.
- Discriminator / encoder: ReLU hidden + dropout 0.25, batch norm everywhere but the input layer.
  A critic that a gradient penalty differentiates (wgan-gp, dragan, GAAN's) uses layer norm
  instead (`norm="layer"`: per sample over channels and positions, a gain and bias per channel),
  as WGAN-GP (Gulrajani et al. 2017, §4) advises: batch norm makes D(x_i) depend on the other
  samples of the batch, so the penalty on ‖∇_{x_i} D(x_i)‖ would not be a per-sample gradient.
- Image sizes 28, 32, 64 by adding or removing layers: the smallest feature map is 7×7 for
  28 px and 4×4 for 32 and 64 px (§4.2-4.4).
- Class-conditional when `num_classes > 0` (the paper trained MNIST and CIFAR-10 with labels):
  the generator / decoder reads [z, one_hot(y)], the discriminator / encoder reads the image with
  one-hot label maps stacked on its channels. Decoder and generator stay the same class, so the
  weight transfer is still one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from ugan.nets.arch import ArchConfig

SMALLEST_MAP = {28: 7, 32: 4, 64: 4}


def num_scales(image_size: int) -> int:
    """Number of stride-2 layers between the image and the smallest feature map."""
    if image_size not in SMALLEST_MAP:
        raise ValueError(f"image_size must be one of {sorted(SMALLEST_MAP)}, got {image_size}")
    scales = 0
    size = image_size
    while size > SMALLEST_MAP[image_size]:
        size //= 2
        scales += 1
    return scales


def _widths(cfg: ArchConfig) -> list[int]:
    """Channel widths from the image-side layer to the smallest map: base, 2·base, 4·base…"""
    return [cfg.base_channels * 2**i for i in range(num_scales(cfg.image_size))]


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(y.long(), num_classes).float()


def with_label_maps(x: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """(N, C, H, W) → (N, C + classes, H, W): one constant map per class, 1 for the label."""
    if not num_classes:
        return x
    if y is None:
        raise ValueError("this net is class-conditional: pass the labels y")
    maps = one_hot(y, num_classes)[:, :, None, None].expand(-1, -1, *x.shape[2:])
    return torch.cat([x, maps], dim=1)


NORMS = ("batch", "layer", "none")  # a trunk's normalisation (layer norm for a critic)


def norm_2d(kind: str, width: int) -> nn.Module:
    """(N, width, s, s) → same: batch norm, layer norm over (width, s, s) per sample, or none."""
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "layer":
        return nn.GroupNorm(1, width)  # one group: layer norm, with a gain / bias per channel
    if kind == "none":  # the WGAN-GP and GAAN authors' MNIST critics
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Zero-centred normal init with std 0.02 for conv/linear weights (paper §4.1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def init_xavier(module: nn.Module) -> None:
    """Xavier (Glorot) uniform weights and zero biases on every (transposed) convolution and
    linear layer; norm layers keep PyTorch's gain 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (N, latent) → image (N, C, H, W) in [-1, 1]. Also the VAE decoder."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        widths = _widths(cfg)[::-1]  # deepest first
        side = SMALLEST_MAP[cfg.image_size]
        self.start_shape = (widths[0], side, side)
        # (N, latent [+ classes]) → (N, widths[0]·side·side)
        self.project = nn.Sequential(
            nn.Linear(cfg.latent_dim + cfg.num_classes, widths[0] * side * side, bias=False),
            nn.BatchNorm1d(widths[0] * side * side),
            nn.LeakyReLU(cfg.leaky_slope),
        )
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            # (N, w_in, s, s) → (N, w_out, 2s, 2s)
            layers += [
                nn.ConvTranspose2d(
                    w_in, w_out, 3, stride=2, padding=1, output_padding=1, bias=False
                ),
                nn.BatchNorm2d(w_out),
                nn.LeakyReLU(cfg.leaky_slope),
            ]
        # (N, widths[-1], H/2, W/2) → (N, C, H, W); no batch norm on the output layer
        layers.append(
            nn.ConvTranspose2d(widths[-1], cfg.channels, 3, stride=2, padding=1, output_padding=1)
        )
        self.upsample = nn.Sequential(*layers)

    def _input(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        classes = self.cfg.num_classes
        if not classes or z.shape[1] == self.cfg.latent_dim + classes:
            return z  # unconditional, or z already carries one_hot(y) (exported models)
        if y is None:
            raise ValueError("this generator is class-conditional: pass the labels y")
        return torch.cat([z, one_hot(y, classes)], dim=1)

    def logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-tanh output. (tanh(a)+1)/2 == sigmoid(2a), so the VAE's BCE uses 2·logits."""
        h = self.project(self._input(z, y)).view(z.shape[0], *self.start_shape)
        return self.upsample(h)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.logits(z, y))


class DownTrunk(nn.Module):
    """image (N, C, H, W) → features (N, F): the shared body of discriminator and encoder.
    `norm`: "batch", or "layer" for a critic under a gradient penalty (see the module)."""

    def __init__(self, cfg: ArchConfig, norm: str = "batch"):
        super().__init__()
        norm_2d(norm, 1)  # the name is checked even where no layer is normalised
        widths = _widths(cfg)
        layers: list[nn.Module] = []
        self.num_classes = cfg.num_classes
        w_in = cfg.channels + cfg.num_classes
        for i, w_out in enumerate(widths):
            # (N, w_in, s, s) → (N, w_out, s/2, s/2); no batch norm on the input layer
            layers.append(nn.Conv2d(w_in, w_out, 3, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(norm_2d(norm, w_out))
            layers += [nn.ReLU(), nn.Dropout(cfg.dropout)]
            w_in = w_out
        self.body = nn.Sequential(*layers)
        side = SMALLEST_MAP[cfg.image_size]
        self.out_features = widths[-1] * side * side

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(with_label_maps(x, y, self.num_classes)).flatten(1)


class Discriminator(nn.Module):
    """image → one logit per sample. The sigmoid of the paper lives in the loss (BCE with
    logits), which is the same function, numerically stable, and lets WGAN use the raw score.
    `norm="layer"` for a critic under a gradient penalty (see the module)."""

    def __init__(self, cfg: ArchConfig, norm: str = "batch", trunk: type[nn.Module] = DownTrunk):
        super().__init__()
        self.cfg = cfg
        self.trunk = trunk(cfg, norm)  # another family's trunk: `ugan.nets.unrolled`
        self.head = nn.Linear(self.trunk.out_features, 1)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.trunk(x, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(x, y)).squeeze(1)


class Encoder(nn.Module):
    """image → (mu, logvar), each (N, latent). Same trunk as the discriminator."""

    def __init__(self, cfg: ArchConfig, trunk: type[nn.Module] = DownTrunk):
        super().__init__()
        self.cfg = cfg
        self.trunk = trunk(cfg)
        self.head = nn.Linear(self.trunk.out_features, 2 * cfg.latent_dim)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.trunk(x, y)).chunk(2, dim=1)
        return mu, logvar


class LatentEncoder(nn.Module):
    """E: image (N, C, H, W) → z (N, latent); the discriminator's trunk and a linear head."""

    def __init__(self, cfg: ArchConfig, trunk: type[nn.Module] = DownTrunk):
        super().__init__()
        self.cfg = cfg
        self.trunk = trunk(cfg)  # (N, C, H, W) → (N, F)
        self.head = nn.Linear(self.trunk.out_features, cfg.latent_dim)  # (N, F) → (N, latent)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(x, y))
