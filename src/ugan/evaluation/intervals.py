"""Means with Student-t confidence intervals over seeds, and the verdict an interval gives: what
the report's claims and the mode-coverage tables aggregate with."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

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
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def verdict(interval: Interval, neutral: float = 0.0) -> str:
    if interval.n < 2 or not math.isfinite(interval.low):
        return "inconclusive"
    if interval.low > neutral:
        return "holds"
    if interval.high < neutral:
        return "does not hold"
    return "inconclusive"
