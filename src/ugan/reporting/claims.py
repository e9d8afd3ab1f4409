"""The paper's three claims tested across seeds, from the (ordinary, unbalanced) pair
comparisons of the report:

1. loss standard deviation is lower for unbalanced than ordinary (paper Fig. 3), D and G, and
   D's loss oscillates less within each checkpoint interval (§4.1: "the losses of Unbalanced
   GANs show small oscillations from the start"; the whole-run std also counts a drift);
2. FID and IS are better at the early checkpoints (Fig. 4, 5);
3. convergence speed: the steps the ordinary run needs to reach the unbalanced run's FID at its
   first checkpoint, divided by that checkpoint's step (> 1: unbalanced is ahead).

Each claim is a per-seed difference oriented so that > 0 favours unbalanced (ratio > 1 for
claim 3). Its verdict reads from the 95 % confidence interval of the mean over seeds (Student's
t): "holds" when the interval lies entirely on the favourable side, "does not hold" when it lies
entirely on the other side, "inconclusive" otherwise — and always with fewer than two seeds. The
IS claim is "not measured" when the pairs have no Inception Score (unlabelled data: the feature
network predicts rotations, not classes); the FID claims when FID is no honest number at the
sample count (N ≤ the feature dimension: `fid_singular` of the pairs, ugan.reporting.scoring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict

from ugan.evaluation.intervals import mean_ci, verdict


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _convergence(pair: dict) -> float:
    """steps_to_match / first checkpoint; a run that never matched counts as its last step
    (a lower bound on the true ratio)."""
    first = pair.get("match_target_step")
    reached = pair.get("steps_to_match") or pair.get("ordinary_last_step")
    if not first or reached is None:
        return math.nan
    return reached / first


# (claim, description, per-pair value where > neutral favours unbalanced, neutral)
CLAIMS: list[tuple[str, str, Callable[[dict], float], float]] = [
    (
        "1. D loss std lower",
        "std(D loss) ordinary − unbalanced",
        lambda p: p["d_loss_std"]["ordinary"] - p["d_loss_std"]["unbalanced"],
        0.0,
    ),
    (
        "1. D loss oscillates less",
        "std(D loss) within checkpoint intervals, ordinary − unbalanced",
        lambda p: p["d_loss_window_std"]["ordinary"] - p["d_loss_window_std"]["unbalanced"],
        0.0,
    ),
    (
        "1. G loss std lower",
        "std(G loss) ordinary − unbalanced",
        lambda p: p["g_loss_std"]["ordinary"] - p["g_loss_std"]["unbalanced"],
        0.0,
    ),
    (
        "2. FID better early",
        "mean early FID ordinary − unbalanced",
        lambda p: _mean(p["early_fid_ordinary"]) - _mean(p["early_fid_unbalanced"]),
        0.0,
    ),
    (
        "2. IS better early",
        "mean early IS unbalanced − ordinary",
        lambda p: _mean(p["early_is_unbalanced"]) - _mean(p["early_is_ordinary"]),
        0.0,
    ),
    (
        "3. converges faster",
        "steps for ordinary to reach unbalanced's first FID ÷ that step",
        _convergence,
        1.0,
    ),
]


NEEDS_IS = frozenset({"2. IS better early"})
NEEDS_FID = frozenset({"2. FID better early", "3. converges faster"})
NOT_MEASURED = "not measured"


def claims_table(pairs: list[dict]) -> list[dict]:
    """One row per (method, loss) group and claim, aggregated over the group's seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for pair in pairs:
        groups.setdefault((pair["method"], pair["loss"]), []).append(pair)
    rows = []
    for (method, loss), members in groups.items():
        for claim, description, value, neutral in CLAIMS:
            values = []
            for pair in members:
                try:
                    values.append(value(pair))
                except (KeyError, TypeError):
                    values.append(math.nan)
            interval = mean_ci(values)
            reason = next((p["isc_unavailable"] for p in members if p.get("isc_unavailable")), None)
            singular = next((p["fid_singular"] for p in members if p.get("fid_singular")), None)
            unmeasured = (claim in NEEDS_IS and reason is not None) or (
                claim in NEEDS_FID and singular is not None
            )
            why = f"Inception Score {reason}" if claim in NEEDS_IS else f"FID {singular}"
            rows.append(
                {
                    "method": method,
                    "loss": loss,
                    "claim": claim,
                    "measure": description,
                    "values": values,
                    **asdict(interval),
                    "verdict": NOT_MEASURED if unmeasured else verdict(interval, neutral),
                    **({"reason": why} if unmeasured else {}),
                }
            )
    return rows


def _fmt(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3g}"


def _unmeasured(row: dict) -> str:
    if row["verdict"] != NOT_MEASURED:
        return ""
    return " (no IS: unlabelled data)" if row["claim"] in NEEDS_IS else " (no FID: N ≤ d)"


def claims_cells(rows: list[dict]) -> tuple[list[str], list[list[str]], str]:
    """(header, cells, alignment) of the claims table, for the report's table renderer."""
    header = ["GAN", "claim", "measure", "seeds", "mean", "95 % CI", "verdict"]
    cells = [
        [
            f"{r['method']}/{r['loss']}",
            r["claim"],
            r["measure"] + _unmeasured(r),
            str(r["n"]),
            _fmt(r["mean"]),
            f"[{_fmt(r['low'])}, {_fmt(r['high'])}]" if r["n"] >= 2 else "n < 2",
            f"**{r['verdict']}**",
        ]
        for r in rows
    ]
    return header, cells, "lllrrll"
