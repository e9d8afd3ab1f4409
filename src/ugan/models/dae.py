"""RFGAN's denoising autoencoder (Bang & Shim 2018, §3.1 and §4), the model.

(Trained by `ugan.training.dae`, stage pretrain_dae.)

"We construct the AE such that its encoder and decoder share the same architecture as the
discriminator and generator": the encoder is the discriminator's trunk (`DownTrunk`, whose last
convolution layer gives the representative features h1), a linear layer maps them to a code of
`latent_dim`, and the decoder is a `Generator`. Denoising (Vincent et al. 2008): the input is
x + σ·ε, ε ~ N(0, I), σ = `dae.noise_std`; the loss is the mean squared error to the clean x.

The output file `DAE_PATH` holds the encoder, code and decoder states and the architecture;
`load_frozen_encoder` gives RFGAN the encoder with its parameters frozen. The path is the same
for every run, like the generator init files.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ugan.core.checkpoint_io import load_checkpoint
from ugan.core.errors import InputError
from ugan.nets.family import family_of


class DenoisingAE(nn.Module):
    """x (N, C, H, W) → reconstruction (N, C, H, W) in [-1, 1]."""

    def __init__(self, cfg, init_std: float = 0.02):
        super().__init__()
        nets = family_of(cfg)  # conv nets for images, MLPs for 2-D points
        self.cfg = cfg
        self.encoder = nets.trunk(cfg)  # x → (N, F): h1, the discriminator's trunk
        self.code = nn.Linear(self.encoder.out_features, cfg.latent_dim)  # (N, F) → (N, latent)
        self.decoder = nets.generator(cfg)  # (N, latent) → x
        nets.init(self, init_std, cfg)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.code(self.encoder(x, y)), y)


def denoising_loss(
    dae: DenoisingAE, x: torch.Tensor, y: torch.Tensor | None, noise_std: float
) -> torch.Tensor:
    """mean (x − DAE(x + σ ε))², ε ~ N(0, I)."""
    return F.mse_loss(dae(x + noise_std * torch.randn_like(x), y), x)


UNNEEDED = "no run used rfgan when pretrain_dae ran, so it trained no DAE"


def unneeded_marker() -> dict:
    """What the pretrain_dae stage writes instead of a DAE when no run needs one: DVC needs its
    output, and a DAE that nothing reads is ~1.5 minutes of CPU for nothing."""
    return {"unneeded": UNNEEDED}


def load_frozen_encoder(path: str | Path, arch) -> nn.Module:
    """The DAE's encoder from `path`, parameters frozen and in eval mode (fixed features)."""
    payload = load_checkpoint(path)
    if "unneeded" in payload:
        raise InputError(f"{path}: {payload['unneeded']}: rerun the pretrain_dae stage")
    if payload.get("arch") != arch.to_dict():
        raise InputError(
            f"{path}: the DAE was trained for architecture {payload.get('arch')}, the run needs "
            f"{arch.to_dict()}: rerun the pretrain_dae stage"
        )
    encoder = family_of(arch).trunk(arch)
    encoder.load_state_dict(payload["encoder"])
    return encoder.requires_grad_(False).eval()
