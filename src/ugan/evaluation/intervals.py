"""Means with Student-t confidence intervals over seeds, and the verdict an interval gives: what
the report's claims and the mode-coverage tables aggregate with."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The t quantile from scipy.special (0.5 s to import) rather than scipy.stats (1.5 s more, on
# every report and modes stage): `stdtrit` is the function `stats.t.ppf` evaluates.
from scipy.special import stdtrit

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = sum(finite) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = stdtrit(n - 1, 0.5 + confidence / 2) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def verdict(interval: Interval, neutral: float = 0.0) -> str:
    if interval.n < 2 or not math.isfinite(interval.low):
        return "inconclusive"
    if interval.low > neutral:
        return "holds"
    if interval.high < neutral:
        return "does not hold"
    return "inconclusive"
