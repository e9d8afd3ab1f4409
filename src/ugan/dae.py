"""RFGAN's denoising autoencoder (Bang & Shim 2018, §3.1 and §4), pre-trained in its own stage.

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

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ugan.checkpoint import load_checkpoint, save_checkpoint
from ugan.config import DAEParams
from ugan.data.batches import InfiniteBatches
from ugan.data.prepared import PreparedData, model_input
from ugan.device import seed_everything
from ugan.images import save_grid
from ugan.nets import ArchConfig
from ugan.nets.family import family_of
from ugan.pretrain_loop import run_pretraining
from ugan.resume import RESUME_ROOT, ResumeStore
from ugan.tracking import StageRun

DAE_PATH = Path("models/dae.pt")
_FREE = {"steps", "log_every", "sample_every"}  # may change across a resume


class DenoisingAE(nn.Module):
    """x (N, C, H, W) → reconstruction (N, C, H, W) in [-1, 1]."""

    def __init__(self, cfg, init_std: float = 0.02):
        super().__init__()
        nets = family_of(cfg)  # conv nets for images, MLPs for 2-D points
        self.cfg = cfg
        self.encoder = nets.trunk(cfg)  # x → (N, F): h1, the discriminator's trunk
        self.code = nn.Linear(self.encoder.out_features, cfg.latent_dim)  # (N, F) → (N, latent)
        self.decoder = nets.generator(cfg)  # (N, latent) → x
        nets.init(self, init_std)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.code(self.encoder(x, y)), y)


def denoising_loss(
    dae: DenoisingAE, x: torch.Tensor, y: torch.Tensor | None, noise_std: float
) -> torch.Tensor:
    """mean (x − DAE(x + σ ε))², ε ~ N(0, I)."""
    return F.mse_loss(dae(x + noise_std * torch.randn_like(x), y), x)


def load_frozen_encoder(path: str | Path, arch) -> nn.Module:
    """The DAE's encoder from `path`, parameters frozen and in eval mode (fixed features)."""
    payload = load_checkpoint(path)
    if payload.get("arch") != arch.to_dict():
        raise ValueError(
            f"{path}: the DAE was trained for architecture {payload.get('arch')}, the run needs "
            f"{arch.to_dict()}: rerun the pretrain_dae stage"
        )
    encoder = family_of(arch).trunk(arch)
    encoder.load_state_dict(payload["encoder"])
    return encoder.requires_grad_(False).eval()


def pretrain_dae(
    params: DAEParams,
    arch: ArchConfig,
    data: PreparedData,
    out_path: Path,
    samples_dir: Path,
    tracker: StageRun,
    *,
    init_std: float = 0.02,
    device: torch.device | str = "cpu",
    fingerprint: dict | None = None,
    resume_root: Path = RESUME_ROOT,
    render: Callable[[torch.Tensor, Path], Path] | None = None,
    store_name: str = "pretrain_dae",
) -> dict:
    """Train the DAE of `arch` (conv or MLP family) on `data.train`; `render` draws the
    held-out (clean, noisy, reconstructed) samples."""
    seed_everything(params.seed)
    dae = DenoisingAE(arch, init_std).to(device)
    optim = torch.optim.Adam(
        dae.parameters(), lr=params.optim.lr, betas=(params.optim.beta1, params.optim.beta2)
    )
    images, labels = data.train
    batches = InfiniteBatches(images, labels, params.batch_size, seed=params.seed, device=device)
    conditional = arch.num_classes > 0
    store = ResumeStore(
        store_name,
        {
            "arch": arch.to_dict(),
            "init_std": init_std,
            **params.model_dump(exclude=_FREE),
            **(fingerprint or {}),
        },
        resume_root,
    )

    def losses(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": denoising_loss(dae, x, y if conditional else None, params.noise_std)}

    run_pretraining(
        "pretrain_dae",
        dae,
        optim,
        batches,
        store,
        tracker,
        steps=params.steps,
        log_every=params.log_every,
        save_every=params.sample_every,
        samples_dir=samples_dir,
        losses=losses,
        prefix="dae",
    )

    metrics = heldout_metrics(dae, data, params.noise_std, samples_dir, tracker, device, render)
    save_checkpoint(
        out_path,
        {
            "encoder": dae.encoder.state_dict(),
            "code": dae.code.state_dict(),
            "decoder": dae.decoder.state_dict(),
            "arch": arch.to_dict(),
            "noise_std": params.noise_std,
            "metrics": metrics,
        },
    )
    store.clear()  # finished: the next execution starts fresh
    return metrics


@torch.no_grad()
def heldout_metrics(
    dae: DenoisingAE,
    data: PreparedData,
    noise_std: float,
    samples_dir: Path,
    tracker: StageRun,
    device: torch.device | str,
    render: Callable[[torch.Tensor, Path], Path] | None = None,
) -> dict:
    """Clean and denoising reconstruction errors on held-out images, and a grid of
    (clean, noisy, reconstructed) rows."""
    images, labels = data.heldout
    x = model_input(images[:256]).to(device)
    y = torch.as_tensor(labels[:256]).to(device) if dae.cfg.num_classes else None
    generator = torch.Generator().manual_seed(0)
    noisy = x + noise_std * torch.randn(x.shape, generator=generator).to(device)
    was_training = dae.training
    dae.eval()
    try:
        clean_recon, noisy_recon = dae(x, y), dae(noisy, y)
    finally:
        dae.train(was_training)
    render = render or (lambda images, path: save_grid(images, path, nrow=8))  # 3 rows
    grid = render(
        torch.cat([x[:8], noisy[:8].clamp(-1, 1), noisy_recon[:8]]),
        samples_dir / "reconstructions.png",
    )
    tracker.log_artifact(grid, "samples")
    return {
        "heldout_mse": F.mse_loss(clean_recon, x).item(),
        "heldout_denoising_mse": F.mse_loss(noisy_recon, x).item(),
    }
