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


def summarize_losses(table: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, float]:
    """{"<name>_mean", "<name>_std"} for every column of `table` (e.g. d_loss, g_loss)."""
    out: dict[str, float] = {}
    for name, values in table.items():
        try:
            stats = loss_statistics(values)
        except ValueError as exc:
            raise ValueError(f"loss column {name!r}: {exc}") from exc
        out[f"{name}_mean"] = stats["mean"]
        out[f"{name}_std"] = stats["std"]
    return out
