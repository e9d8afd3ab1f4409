"""The mode-coverage results as tables (Markdown, for the terminal, the report and MLflow) and
one picture of every variant's final samples per benchmark."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ugan.core.io import atomic_path
from ugan.core.markdown import md_table
from ugan.modebench.trajectory import trajectory_figure, trajectory_table

DASH = "–"
# How many decimals a metric reads best with.
DECIMALS = {
    "modes_covered": 1,
    "registered_points": 0,
    "registered_fraction": 3,
    "mode_tv": 3,
    "kl_uniform": 2,
    "msssim": 3,
    "confident": 3,
}
LABELS = {
    "modes_covered": "modes",
    "registered_points": "registered pts",
    "registered_fraction": "registered frac",
    "mode_tv": "TV",
    "kl_uniform": "KL",
    "msssim": "MS-SSIM",
    "confident": "confident",
}
# The columns of the methods × benchmarks table: (benchmark kind, metric).
HEADLINE = {
    "ring8": ("modes_covered", "registered_fraction"),
    "grid25": ("modes_covered", "registered_points", "mode_tv"),
    "stacked-mnist": ("modes_covered", "kl_uniform", "msssim", "confident"),
}


def headline_metric(summary: dict) -> str:
    """The metric a benchmark is judged by first (its curve over steps is drawn)."""
    return HEADLINE.get(summary["benchmark"], summary["metrics"])[0]


def headline_curves(summaries: dict[str, dict], path: Path) -> Path | None:
    """Each benchmark's headline metric against the step (`trajectory_figure`); None if no
    benchmark was scored at more than one step. The `modes` stage and the report draw this."""
    metrics = {name: headline_metric(s) for name, s in summaries.items()}
    return trajectory_figure(summaries, metrics, path)


def fmt_interval(stat: dict, decimals: int) -> str:
    """mean [low, high] (n seeds), or the mean alone for one seed."""
    mean, low, high = stat["mean"], stat["low"], stat["high"]
    if mean is None or not math.isfinite(mean):
        return DASH
    if low is None or not math.isfinite(low):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def _fmt(value, decimals: int) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def benchmark_table(summary: dict) -> str:
    """One benchmark: a row per variant (mean [95 % CI] over seeds), the real data's score, and
    the paper's figures where the paper has the same method."""
    metrics = summary["metrics"]
    header = ["variant", "method", "loss", "init", "seeds", *(LABELS[m] for m in metrics)]
    rows = []
    for key, v in summary["variants"].items():
        cells = [fmt_interval(v["metrics"][m], DECIMALS[m]) for m in metrics]
        rows.append([key, v["method"], v["loss"], v["init"], str(len(v["seeds"])), *cells])
        if v.get("paper"):
            paper = v["paper"]
            cells = [paper.get(m, DASH) for m in metrics]
            rows.append([f"  paper: {paper['label']}", "", "", "", "", *cells])
    reference = summary["reference"]
    rows.append(
        ["real data", "", "", "", "", *(_fmt(reference.get(m), DECIMALS[m]) for m in metrics)]
    )
    return md_table(header, rows, "lllll" + "r" * len(metrics))


def methods_by_benchmarks(summaries: dict[str, dict]) -> str:
    """Rows: variants (by key); columns: each benchmark's headline metrics (mean over seeds)."""
    columns = [
        (name, metric)
        for name, s in summaries.items()
        for metric in HEADLINE.get(s["benchmark"], s["metrics"])
        if metric in s["metrics"]  # a summary written before a metric was added lacks it
    ]
    variants = list(dict.fromkeys(k for s in summaries.values() for k in s["variants"]))
    header = ["variant", *(f"{name} {LABELS[m]}" for name, m in columns)]
    rows = []
    for variant in variants:
        row = [variant]
        for name, metric in columns:
            v = summaries[name]["variants"].get(variant)
            row.append(_fmt(v["metrics"][metric]["mean"], DECIMALS[metric]) if v else DASH)
        rows.append(row)
    rows.append(
        ["real data", *(_fmt(summaries[n]["reference"].get(m), DECIMALS[m]) for n, m in columns)]
    )
    return md_table(header, rows, "l" + "r" * len(columns))


def markdown(summaries: dict[str, dict]) -> str:
    """The whole mode-coverage section: the overview, then one table per benchmark."""
    if not summaries:
        return (
            "No mode-coverage benchmark is configured (`modes:` in params.yaml is empty). "
            "Run them with `ugan grid modes`."
        )
    lines = [
        "Mean over seeds; per benchmark below, mean [95 % CI]. Modes, registered points and "
        "fraction: higher is better; TV, KL and MS-SSIM: lower is better (MS-SSIM near the real "
        "data's is the goal). 'real data' scores real samples of the same count.",
        "",
        methods_by_benchmarks(summaries),
        "",
    ]
    for name, s in summaries.items():
        steps = sorted({v["steps"] for v in s["variants"].values()})
        lines += [
            f"### {name} ({s['benchmark']}, {', '.join(map(str, steps))} steps, "
            f"{s['num_samples']} samples scored)",
            "",
            benchmark_table(s),
            "",
        ]
        metric = headline_metric(s)
        trend = trajectory_table(s, metric, DECIMALS[metric])
        if trend:
            lines += [f"{LABELS[metric]} at each checkpoint (mean over seeds):", "", trend, ""]
        if s.get("paper_source"):
            lines += [f"Paper rows: {s['paper_source']}.", ""]
    return "\n".join(lines)


def final_samples_figure(summaries: dict[str, dict], path: Path) -> Path:
    """A grid: one row per benchmark, one column per variant, its first seed's final samples."""
    names = list(summaries)
    variants = list(dict.fromkeys(k for s in summaries.values() for k in s["variants"]))
    fig = Figure(figsize=(2.6 * len(variants), 2.8 * len(names)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), len(variants), squeeze=False))
    for i, name in enumerate(names):
        for j, variant in enumerate(variants):
            ax = axes[i, j]
            ax.axis("off")
            v = summaries[name]["variants"].get(variant)
            if v is None or not Path(v["picture"]).is_file():
                continue
            ax.imshow(np.asarray(Image.open(v["picture"]).convert("RGB")))
            ax.set_title(f"{name}\n{variant}", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
