"""VAE pre-training (Algorithm 1, first loop): the decoder becomes the generator's init."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ugan.config.schema import PerfParams, VAEParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.device import seed_everything
from ugan.core.paths import RESUME_ROOT
from ugan.data.images import save_grid
from ugan.data.pixels import model_input
from ugan.data.prepared import PreparedData
from ugan.models.vae import VAE, vae_loss
from ugan.nets.arch import ArchConfig
from ugan.nets.generator_file import noise, sample
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import claim_process, numeric_identity
from ugan.training.loop import OptimizerTask, run_pretraining


def pretrain_vae(
    params: VAEParams,
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
    render: Callable[[torch.Tensor, Path], Path] = save_grid,
    store_name: str = "pretrain_vae",
    perf: PerfParams | None = None,
    num_samples: int = 64,
) -> dict:
    """Train the VAE of `arch` (conv or MLP family) on `data.train`; `render` draws samples
    (an image grid, or a scatter plot for 2-D points)."""
    claim_process(perf, device)  # before any CUDA work
    seed_everything(params.seed)
    vae = VAE(arch, init_std).to(device)
    optim = torch.optim.Adam(
        vae.parameters(),
        lr=params.optim.lr,
        betas=(params.optim.beta1, params.optim.beta2),
        weight_decay=params.optim.weight_decay,
    )
    z_fixed = noise(num_samples, arch.latent_dim, seed=params.seed + 1, device=device)
    heldout = torch.as_tensor(data.heldout[0][:num_samples])
    heldout_labels = torch.as_tensor(data.heldout[1][:num_samples])

    def losses(x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, mu, logvar = vae(x, labels if arch.num_classes else None)
        loss = vae_loss(x, logits, mu, logvar)
        return {"loss": loss.total, "recon": loss.recon, "kl": loss.kl}

    def save_samples(step: int) -> None:
        path = render(sample(vae.decoder, z_fixed), samples_dir / f"step_{step:06d}.png")
        tracker.log_artifact(path, "samples")

    task = OptimizerTask(
        "pretrain_vae",
        vae,
        optim,
        losses,
        prefix="vae",
        samples_dir=samples_dir,
        shown="{:.1f}",
        on_save=save_samples,
    )
    store = run_pretraining(
        task, params, data.train, tracker, identity={"arch": arch.to_dict(), "init_std": init_std},
        fingerprint={**numeric_identity(perf, device), **(fingerprint or {})},
        store_name=store_name, resume_root=resume_root, device=device,
        perf=perf,
    )  # fmt: skip

    # Held-out reconstructions: the honest check that the VAE learned the data.
    with torch.no_grad():
        vae.eval()
        x = model_input(heldout).to(device)
        y = heldout_labels.to(device) if arch.num_classes else None
        logits, mu, logvar = vae(x, y)
        final = vae_loss(x, logits, mu, logvar)
        recon_grid = render(  # the decoder ends in tanh (the VAE loss relies on it)
            torch.cat([x[:32], torch.tanh(logits[:32])]), samples_dir / "reconstructions.png"
        )
    tracker.log_artifact(recon_grid, "samples")
    metrics = {
        "heldout_loss": final.total.item(),
        "heldout_recon": final.recon.item(),
        "heldout_kl": final.kl.item(),
        "steps": params.steps,
    }
    save_checkpoint(
        out_path,
        {
            "encoder": vae.encoder.state_dict(),
            "decoder": vae.decoder.state_dict(),
            "arch": arch.to_dict(),
            "metrics": metrics,
        },
    )
    store.clear()  # finished: the next execution starts fresh
    return metrics
