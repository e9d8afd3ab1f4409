"""Training-stability statistics: mean and spread of the logged discriminator / generator losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def loss_statistics(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """{"mean", "std"} of a 1-D series of losses, ignoring NaN; std is the population std (ddof=0).

    Raises ValueError when the series is empty, is not 1-D, or holds nothing but NaN.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D series of loss values, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("expected at least one loss value, got an empty series")
    finite = array[~np.isnan(array)]
    if finite.size == 0:
        raise ValueError(f"expected at least one non-NaN loss value, all {array.size} are NaN")
    return {"mean": float(finite.mean()), "std": float(finite.std(ddof=0))}


def window_std(values: Sequence[float] | np.ndarray, window: int) -> float:
    """The mean of the population std within consecutive windows of `window` values, NaN
    ignored, windows with fewer than two finite values skipped: how much a loss oscillates,
    without the drift of its level over the run that the whole-run std also counts (a run
    that starts balanced and drifts has a large std and small oscillations). NaN when no
    window has two finite values."""
    if window < 2:
        raise ValueError(f"window must hold at least 2 values, got {window}")
    array = np.asarray(values, dtype=np.float64)
    spreads = []
    for start in range(0, array.size, window):
        chunk = array[start : start + window]
        chunk = chunk[~np.isnan(chunk)]
        if chunk.size >= 2:
            spreads.append(chunk.std(ddof=0))
    return float(np.mean(spreads)) if spreads else float("nan")


def summarize_losses(
    table: Mapping[str, Sequence[float] | np.ndarray], d_scale: float | None = None
) -> dict[str, float]:
    """{"<name>_mean", "<name>_std"} for every column of `table` (e.g. d_loss, g_loss), our
    training losses as logged. With `d_scale` (`ugan.evaluation.evaluate.paper_d_scale`) also
    "d_loss_paper_mean" and "d_loss_paper_std": the D loss on the paper's Fig. 3 scale (for
    ns: half our sum, so half our std), to set beside the paper's numbers. Whether
    unbalanced's std is lower than ordinary's does not depend on the scale (both runs of a
    pair share their loss)."""
    out: dict[str, float] = {}
    for name, values in table.items():
        try:
            stats = loss_statistics(values)
        except ValueError as exc:
            raise ValueError(f"loss column {name!r}: {exc}") from exc
        out[f"{name}_mean"] = stats["mean"]
        out[f"{name}_std"] = stats["std"]
    if d_scale is not None and "d_loss_mean" in out:
        out["d_loss_paper_mean"] = d_scale * out["d_loss_mean"]
        out["d_loss_paper_std"] = d_scale * out["d_loss_std"]
    return out
