"""VAE pre-training (Algorithm 1, first loop): the decoder becomes the generator's init."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from ugan.checkpoint import save_checkpoint
from ugan.config import VAEParams
from ugan.data.batches import InfiniteBatches
from ugan.data.prepared import PreparedData, model_input
from ugan.device import seed_everything
from ugan.images import save_grid
from ugan.nets import ArchConfig
from ugan.nets.registry import noise, sample
from ugan.progress import progress
from ugan.resume import RESUME_ROOT, ResumeStore, StopRequest, capture_rng, restore_rng
from ugan.tracking import StageRun
from ugan.train import NonFiniteLossError
from ugan.vae import VAE, vae_loss

# Params that may change across a resume (extending a run, other logging cadence).
_FREE = {"steps", "log_every", "sample_every"}


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
    num_samples: int = 64,
) -> dict:
    """Train the VAE of `arch` (conv or MLP family) on `data.train`; `render` draws samples
    (an image grid, or a scatter plot for 2-D points)."""
    seed_everything(params.seed)
    vae = VAE(arch, init_std).to(device)
    optim = torch.optim.Adam(
        vae.parameters(), lr=params.optim.lr, betas=(params.optim.beta1, params.optim.beta2)
    )
    images, labels = data.train
    batches = InfiniteBatches(images, labels, params.batch_size, seed=params.seed, device=device)
    z_fixed = noise(num_samples, arch.latent_dim, seed=params.seed + 1, device=device)
    heldout = torch.as_tensor(data.heldout[0][:num_samples])
    heldout_labels = torch.as_tensor(data.heldout[1][:num_samples])

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
    window = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    count = 0
    with store, StopRequest() as stop:
        state = store.latest()
        step = state["step"] if state else 0
        for old in samples_dir.glob("step_*.png"):  # persisted by DVC; stale beyond `step`
            if int(old.stem.split("_")[1]) > step:
                old.unlink()
        if state:
            vae.load_state_dict(state["vae"])
            optim.load_state_dict(state["optim"])
            batches.load_state_dict(state["batches"])
            restore_rng(state["rng"])
            tracker.mark_interrupted(state.get("mlflow_run_id"))
            tracker.set_tags({"ugan.resumed_from_step": step})

        def snapshot() -> dict:
            return {
                "vae": vae.state_dict(),
                "optim": optim.state_dict(),
                "batches": batches.state_dict(),
                "rng": capture_rng(),
                "mlflow_run_id": tracker.run_id or "",
            }

        with progress(params.steps, "pretrain_vae") as bar:
            bar.update(step)
            while step < params.steps:
                try:
                    stop.check()
                except KeyboardInterrupt:
                    store.save(step, snapshot())
                    raise
                x, labels = batches.next()
                y = labels if arch.num_classes else None
                logits, mu, logvar = vae(x, y)
                loss = vae_loss(x, logits, mu, logvar)
                if not math.isfinite(loss.total.item()):
                    raise NonFiniteLossError(
                        f"pretrain_vae: non-finite loss at step {step + 1}: "
                        f"recon={loss.recon.item()}, kl={loss.kl.item()}"
                    )
                optim.zero_grad(set_to_none=True)
                loss.total.backward()
                optim.step()
                step += 1
                window["loss"] += loss.total.item()
                window["recon"] += loss.recon.item()
                window["kl"] += loss.kl.item()
                count += 1
                if step % params.log_every == 0 or step == params.steps:
                    averages = {f"vae_{k}": v / count for k, v in window.items()}
                    tracker.log_metrics(averages, step=step)
                    bar.set_postfix(loss=f"{averages['vae_loss']:.1f}", refresh=False)
                    window = dict.fromkeys(window, 0.0)
                    count = 0
                if step % params.sample_every == 0 or step == params.steps:
                    grid = sample(vae.decoder, z_fixed)
                    path = render(grid, samples_dir / f"step_{step:06d}.png")
                    tracker.log_artifact(path, "samples")
                    store.save(step, snapshot())
                bar.update(1)

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
