"""How the report writes numbers, in its markdown, verdicts and figure labels.

A value that is missing or not finite is written as `DASH`; steps get thousands separators.
Pure functions of their arguments; no file is read or written.
"""

from __future__ import annotations

import math
from typing import Any

DASH = "—"
NA = "n/a"  # a metric that was not computed on purpose (no IS for unlabelled data)


def finite(x: Any) -> bool:
    """Whether `x` is a number (or a string of one) that is finite."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt(x: Any, decimals: int) -> str:
    return f"{float(x):.{decimals}f}" if finite(x) else DASH


def fmt_pm(mean: Any, std: Any, decimals: int) -> str:
    """``mean ± std``; the mean alone when the std is missing; `DASH` without a mean."""
    if not finite(mean):
        return DASH
    if not finite(std):
        return fmt(mean, decimals)
    return f"{float(mean):.{decimals}f} ± {float(std):.{decimals}f}"


def fmt_step(step: Any) -> str:
    return f"{int(step):,}"
