"""Scatter plots of generated 2-D points over a mixture's modes (GAAN Fig. 6), as PNG files.

Registered points (within 3 σ of a mean) are drawn in blue, off-mode points in grey, the means
as red crosses with their 3 σ circles. The axes span the mixture's fixed `extent` (unless points
lie further out), so frames of one run at different steps line up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ugan.core.io import atomic_path
from ugan.data.toy import GaussianMixture2D
from ugan.evaluation.modes import assign_modes

DPI = 100


def scatter_figure(
    points: np.ndarray | torch.Tensor,
    mixture: GaussianMixture2D,
    title: str | None = None,
    size_inches: float = 5.0,
) -> Figure:
    """A square figure of `points` (N, 2), in mixture coordinates, over `mixture`'s modes."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {x.shape}")
    x = x[np.isfinite(x).all(axis=1)]
    registered = assign_modes(x, mixture.centres, mixture.register_radius) >= 0

    fig = Figure(figsize=(size_inches, size_inches), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(*x[~registered].T, s=2, c="0.6", linewidths=0, label="off-mode")
    ax.scatter(*x[registered].T, s=2, c="tab:blue", linewidths=0, label="registered (≤ 3σ)")
    ax.scatter(*mixture.centres.T, s=20, c="tab:red", marker="x", linewidths=0.8, label="means")
    for centre in mixture.centres:
        ax.add_patch(
            Circle(tuple(centre), mixture.register_radius, fill=False, lw=0.6, ec="tab:red")
        )
    limit = mixture.extent
    if len(x):
        limit = max(limit, float(np.abs(x).max()) * 1.05)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_title(title or f"{mixture.name}: {registered.sum()} of {len(x)} points registered")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8, frameon=False)
    return fig


def save_scatter(
    points: np.ndarray | torch.Tensor,
    mixture: GaussianMixture2D,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write `scatter_figure(points, mixture, title)` to `path` as a PNG, atomically."""
    fig = scatter_figure(points, mixture, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)
