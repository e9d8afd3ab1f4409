"""A cell scored at every checkpoint it keeps, not only at its last step: over seeds, as a
table and as a figure (the scoring itself: `ugan.modebench.runner.score_checkpoints`).

A 2-D GAN's mode count can settle long before its run ends, or rise and fall as it hops between
modes (RFGAN §4.1: RFGAN "first responds similarly to GAN, then gradually produces the entire
mode"); one number at the end cannot tell these apart. Each checkpoint is scored the way the final
generator is (the same `num_samples` and the same scoring z per seed, so steps compare), its scores
are logged to the cell's MLflow run at that step (a curve per metric in the UI), and the stage
aggregates them per variant and step over seeds: a table and a figure of the headline metric.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ugan.core.io import atomic_path
from ugan.core.markdown import md_table
from ugan.evaluation.intervals import mean_ci

STEP_COLUMNS = 8  # at most this many steps in a terminal table (evenly picked, the last kept)


def aggregate(cells: list[dict], metrics) -> dict[str, list[dict]]:
    """{metric: [{step, mean, low, high, values}, …]} over the cells' trajectories (each a list
    of {step, scores} in step order), at the steps every cell has."""
    scored = [{point["step"]: point["scores"] for point in c.get("trajectory", [])} for c in cells]
    steps = sorted(set.intersection(*map(set, scored))) if scored else []
    out: dict[str, list[dict]] = {}
    for metric in metrics:
        out[metric] = []
        for step in steps:
            values = [cell[step].get(metric) for cell in scored]  # None: scored before it
            ci = mean_ci(values)
            out[metric].append(
                {"step": step, "mean": ci.mean, "low": ci.low, "high": ci.high, "values": values}
            )
    return out


def _points(variant: dict, metric: str) -> dict[int, dict]:
    return {point["step"]: point for point in variant.get("trajectory", {}).get(metric, [])}


def _picked(steps: list[int]) -> list[int]:
    if len(steps) <= STEP_COLUMNS:
        return steps
    index = np.linspace(0, len(steps) - 1, STEP_COLUMNS).round().astype(int)
    return [steps[i] for i in dict.fromkeys(index.tolist())]


def trajectory_table(summary: dict, metric: str, decimals: int) -> str | None:
    """A row per variant, a column per scored step: `metric`'s mean over seeds. None when no
    variant was scored at more than one step."""
    points = {key: _points(v, metric) for key, v in summary["variants"].items()}
    steps = sorted(set().union(*points.values()))
    if len(steps) < 2:
        return None
    columns = _picked(steps)
    rows = [
        [key, *(_fmt(by_step.get(step), decimals) for step in columns)]
        for key, by_step in points.items()
    ]
    header = ["variant", *(f"{step:,}" for step in columns)]
    return md_table(header, rows, "l" + "r" * len(columns))


def _fmt(point: dict | None, decimals: int) -> str:
    finite = point is not None and point["mean"] is not None and math.isfinite(point["mean"])
    return f"{point['mean']:.{decimals}f}" if finite else "–"


def trajectory_figure(summaries: dict[str, dict], metrics: dict[str, str], path: Path):
    """One panel per benchmark scored at more than one step: its metric (`metrics[name]`)
    against the step, a line per variant (the mean over seeds, its 95 % band, each seed faint).
    None if no benchmark was."""
    shown = {
        name: s
        for name, s in summaries.items()
        if any(len(_points(v, metrics[name])) > 1 for v in s["variants"].values())
    }
    if not shown:
        return None
    fig = Figure(figsize=(5.0 * len(shown), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(shown), squeeze=False)[0])
    for ax, (name, s) in zip(axes, shown.items(), strict=True):
        metric = metrics[name]
        for key, v in s["variants"].items():
            points = v.get("trajectory", {}).get(metric, [])
            if not points:
                continue
            x = [point["step"] for point in points]
            mean = [point["mean"] for point in points]
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=key)
            low, high = [p["low"] for p in points], [p["high"] for p in points]
            if all(value is not None and math.isfinite(value) for value in low + high):
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
            for seed_values in zip(*(point["values"] for point in points), strict=True):
                ax.plot(x, seed_values, color=line.get_color(), alpha=0.25, linewidth=0.8)
        reference = s["reference"].get(metric)
        if reference is not None and math.isfinite(reference):  # a line inside the y-range
            span = [p["step"] for v in s["variants"].values() for p in _points(v, metric).values()]
            ax.plot([min(span), max(span)], [reference] * 2, "k:", linewidth=1, label="real data")
        ax.set_title(f"{name} ({s['benchmark']})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(metric.replace("_", " "))
        ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
