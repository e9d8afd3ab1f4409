"""RFGAN's denoising autoencoder pre-trained in its own stage (`pretrain_dae`), through the
shared training loop; the model is `ugan.models.dae`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ugan.config.schema import DAEParams, PerfParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.device import seed_everything
from ugan.core.paths import RESUME_ROOT
from ugan.data.images import save_grid
from ugan.data.pixels import model_input
from ugan.data.prepared import PreparedData
from ugan.models.dae import DenoisingAE, denoising_loss, unneeded_marker
from ugan.nets.arch import ArchConfig
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import claim_process, numeric_identity
from ugan.training.loop import OptimizerTask, run_pretraining


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
    perf: PerfParams | None = None,
) -> dict:
    """Train the DAE of `arch` (conv or MLP family) on `data.train`; `render` draws the
    held-out (clean, noisy, reconstructed) samples."""
    claim_process(perf, device)  # before any CUDA work
    seed_everything(params.seed)
    dae = DenoisingAE(arch, init_std).to(device)
    optim = torch.optim.Adam(
        dae.parameters(),
        lr=params.optim.lr,
        betas=(params.optim.beta1, params.optim.beta2),
        weight_decay=params.optim.weight_decay,
    )
    conditional = arch.num_classes > 0

    def losses(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": denoising_loss(dae, x, y if conditional else None, params.noise_std)}

    task = OptimizerTask("pretrain_dae", dae, optim, losses, prefix="dae", samples_dir=samples_dir)
    store = run_pretraining(
        task, params, data.train, tracker, identity={"arch": arch.to_dict(), "init_std": init_std},
        fingerprint={**numeric_identity(perf, device), **(fingerprint or {})},
        store_name=store_name, resume_root=resume_root, device=device,
        perf=perf,
    )  # fmt: skip

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


def skip_pretraining(out_path: Path, samples_dir: Path, tracker: StageRun) -> dict:
    """What the stage does when no run uses rfgan: no training, a marker in `out_path` that
    `ugan.models.dae.load_frozen_encoder` refuses with a clear message, no stale sample grids
    (DVC persists the folder), and `steps: 0` as its metrics."""
    tracker.set_tags({"ugan.skipped": "no run uses rfgan"})
    samples_dir.mkdir(parents=True, exist_ok=True)
    for stale in samples_dir.glob("*.png"):
        stale.unlink()
    save_checkpoint(out_path, unneeded_marker())
    print("pretrain_dae: no run uses rfgan, nothing to train")
    return {"steps": 0}
