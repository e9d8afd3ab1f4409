"""Latent interpolations: at each evaluated checkpoint, a grid of G along straight lines (and,
for a Gaussian prior, great circles) between fixed pairs of latents.

`PAIRS` pairs (z_a, z_b) are drawn from the generator's prior with a fixed seed (the same pairs
at every checkpoint and for every run of one latent size); row i of a grid is G along
z_i(t), t = 0, 1/(STEPS − 1), …, 1, with

    linear:  z(t) = (1 − t) z_a + t z_b
    slerp:   z(t) = sin((1 − t) Ω) / sin Ω · z_a + sin(t Ω) / sin Ω · z_b,
             cos Ω = ⟨z_a, z_b⟩ / (|z_a| |z_b|)             (White 2016, "Sampling generative
             networks"; a straight line when Ω ≈ 0)

The endpoints are z_a and z_b themselves (t = 0 and 1 are set, not computed). A linear midpoint
of two Gaussian latents has ~0.71 of their norm, a region the prior rarely samples; slerp keeps
the norm (exactly for unit vectors), which is why it is drawn for Gaussian priors only (a
uniform prior's cube has no such shell).

G is applied with *frozen* batch statistics: the running statistics of its BatchNorm layers are
recomputed from `REFERENCE` latents of the prior (a cumulative average), then G runs in eval
mode. Each image is then a function of its own latent only (with the batch statistics of
`ugan.nets.generator_file.sample`, a column of interpolated latents would shift its own
normalisation), and a grid's columns are computed one batch each (all pairs at one t), so the
first column is exactly G(z_a) and the last exactly G(z_b).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ugan.data.images import save_grid
from ugan.nets.generator_file import class_labels, noise

PAIRS, STEPS = 8, 8
SEED = 1234  # the pairs' seed, apart from the evaluation samples' `eval.seed`
REFERENCE = 500  # prior latents that set the frozen batch statistics


def lerp(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(N, D) × (N, D) × (T,) → (N, T, D): straight lines, endpoints exact."""
    path = torch.lerp(z_a[:, None], z_b[:, None], t[None, :, None])
    return _pinned(path, z_a, z_b)


def slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(N, D) × (N, D) × (T,) → (N, T, D): great-circle arcs (see the module), endpoints exact."""
    unit_a = z_a / z_a.norm(dim=1, keepdim=True)
    unit_b = z_b / z_b.norm(dim=1, keepdim=True)
    omega = torch.acos((unit_a * unit_b).sum(1).clamp(-1.0, 1.0))[:, None, None]  # (N, 1, 1)
    s = omega.sin()
    t = t[None, :, None]
    arc = (((1 - t) * omega).sin() * z_a[:, None] + (t * omega).sin() * z_b[:, None]) / s
    path = torch.where(s.abs() < 1e-6, torch.lerp(z_a[:, None], z_b[:, None], t), arc)
    return _pinned(path, z_a, z_b)


def _pinned(path: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    path[:, 0], path[:, -1] = z_a, z_b
    return path


MODES = {"linear": lerp, "slerp": slerp}


def _classes(generator: nn.Module) -> int:
    return getattr(generator.cfg, "num_classes", 0)


def modes_for(prior: str) -> list[str]:
    """The interpolations drawn for a prior: slerp for a Gaussian one only."""
    return ["linear", "slerp"] if prior == "normal" else ["linear"]


@torch.no_grad()
def frozen_statistics(generator: nn.Module, seed: int = SEED, count: int = REFERENCE):
    """A copy of `generator` in eval mode whose BatchNorm running statistics are the average
    over `count` latents of its prior (so that every image depends on its own latent only)."""
    frozen = copy.deepcopy(generator)
    norms = [m for m in frozen.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative: one pass sets the plain average
    if norms:
        device = next(frozen.parameters()).device
        z = noise(count, frozen.cfg.latent_dim, generator.prior, seed=seed + 1, device=device)
        y = class_labels(count, _classes(frozen), device)
        frozen.train()
        frozen(z) if y is None else frozen(z, y)
    return frozen.eval()


@torch.no_grad()
def interpolation_images(
    frozen: nn.Module, z_a: torch.Tensor, z_b: torch.Tensor, mode: str, steps: int = STEPS
) -> torch.Tensor:
    """(N, T, C, H, W): `frozen` (see `frozen_statistics`) along the N paths of `mode`, one
    batch per t; a conditional G keeps the class of its row (row i: class i mod K)."""
    t = torch.linspace(0.0, 1.0, steps, device=z_a.device)
    path = MODES[mode](z_a, z_b, t)
    y = class_labels(len(z_a), _classes(frozen), z_a.device)
    columns = [frozen(path[:, j]) if y is None else frozen(path[:, j], y) for j in range(steps)]
    return torch.stack(columns, dim=1)


def endpoints(latent_dim: int, prior: str, device: torch.device | str = "cpu", pairs: int = PAIRS):
    """The fixed pairs (z_a, z_b), each (pairs, latent_dim), from the prior."""
    z = noise(2 * pairs, latent_dim, prior, seed=SEED, device=device)
    return z[:pairs], z[pairs:]


def grid_path(folder: Path, step: int, mode: str) -> Path:
    return Path(folder) / f"step_{step:06d}_{mode}.png"


def write_interpolations(generator: nn.Module, folder: Path, step: int) -> list[Path]:
    """The interpolation grids of `generator` at checkpoint `step` (rows: pairs, columns: t)."""
    device = next(generator.parameters()).device
    frozen = frozen_statistics(generator)
    z_a, z_b = endpoints(generator.cfg.latent_dim, generator.prior, device)
    written = []
    for mode in modes_for(generator.prior):
        images = interpolation_images(frozen, z_a, z_b, mode)
        grid = images.flatten(0, 1).cpu()
        written.append(save_grid(grid, grid_path(folder, step, mode), nrow=images.shape[1]))
    return written
