"""VAE pre-training (Algorithm 1, first loop): the decoder becomes the generator's init."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ugan.checkpoint import save_checkpoint
from ugan.config import VAEParams
from ugan.data.batches import InfiniteBatches
from ugan.data.prepared import PreparedData
from ugan.device import seed_everything
from ugan.images import save_grid
from ugan.nets import ArchConfig
from ugan.progress import progress
from ugan.tracking import StageRun
from ugan.train import NonFiniteLossError, fixed_noise, sample
from ugan.vae import VAE, vae_loss


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
) -> dict:
    seed_everything(params.seed)
    vae = VAE(arch, init_std).to(device)
    optim = torch.optim.Adam(
        vae.parameters(), lr=params.optim.lr, betas=(params.optim.beta1, params.optim.beta2)
    )
    images, labels = data.train
    batches = InfiniteBatches(images, labels, params.batch_size, seed=params.seed, device=device)
    z_fixed = fixed_noise(64, arch.latent_dim, params.seed + 1, device)
    heldout = torch.as_tensor(data.heldout[0][:64])

    window = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    count = 0
    with progress(params.steps, "pretrain_vae") as bar:
        for step in range(1, params.steps + 1):
            x, _ = batches.next()
            logits, mu, logvar = vae(x)
            loss = vae_loss(x, logits, mu, logvar)
            if not math.isfinite(loss.total.item()):
                raise NonFiniteLossError(f"pretrain_vae: non-finite loss at step {step}")
            optim.zero_grad(set_to_none=True)
            loss.total.backward()
            optim.step()
            window["loss"] += loss.total.item()
            window["recon"] += loss.recon.item()
            window["kl"] += loss.kl.item()
            count += 1
            if step % params.log_every == 0 or step == params.steps:
                averages = {f"vae_{k}": v / count for k, v in window.items()}
                tracker.log_metrics(averages, step=step)
                bar.set_postfix(loss=f"{averages['vae_loss']:.1f}")
                window = dict.fromkeys(window, 0.0)
                count = 0
            if step % params.sample_every == 0 or step == params.steps:
                path = save_grid(sample(vae.decoder, z_fixed), samples_dir / f"step_{step:06d}.png")
                tracker.log_artifact(path, "samples")
            bar.update(1)

    # Held-out reconstructions: the honest check that the VAE learned the data.
    with torch.no_grad():
        vae.eval()
        x = heldout.to(device).float().div(127.5).sub(1.0)
        logits, mu, logvar = vae(x)
        final = vae_loss(x, logits, mu, logvar)
        recon_grid = save_grid(
            torch.cat([x[:32], torch.tanh(logits[:32])]),
            samples_dir / "reconstructions.png",
            nrow=8,
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
    return metrics
