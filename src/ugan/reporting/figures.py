"""The report's figures (matplotlib, PNG): FID and Inception Score vs training step, the D and G
losses, the sample grids over training, and precision / recall / density / coverage
(`ugan.reporting.prdc`).

`draw_figures` writes the four files named in `FIGURES` into a folder, each atomically, at
`DPI`. Every (method, loss) group gets one hue: ordinary runs light and dashed, unbalanced runs
dark and solid. A missing value, run without samples or unreadable PNG is drawn as a note in
its panel, never an error. Figures are built with `matplotlib.figure.Figure` (no pyplot state).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator
from PIL import Image

from ugan.core.io import atomic_path
from ugan.reporting.comparisons import (
    ORDINARY_INIT,
    UNBALANCED_INIT,
    floor_numbers,
    isc_unavailable,
    role,
)
from ugan.reporting.formatting import finite, fmt, fmt_step
from ugan.reporting.inputs import LoadedRun
from ugan.reporting.prdc import FIGURE as PRDC_FIGURE
from ugan.reporting.prdc import plot_prdc

DPI = 110
FIGURES = {"fid": "fid.png", "is": "is.png", "losses": "losses.png", "samples": "samples.png"}
FIGURES["prdc"] = PRDC_FIGURE  # drawn by ugan.reporting.prdc

# One hue family per (method, loss) group: (ordinary shade, unbalanced shade).
_FAMILIES = [
    ("#6baed6", "#08519c"),  # blue
    ("#fd8d3c", "#a63603"),  # orange
    ("#74c476", "#00692c"),  # green
    ("#b4a7d6", "#54278f"),  # purple
    ("#f768a1", "#ae017e"),  # magenta
    ("#bdbdbd", "#252525"),  # grey
]


def draw_figures(runs: list[LoadedRun], out_dir: Path, smoothing: int, sample_columns: int) -> None:
    """Write the files of `FIGURES` into `out_dir`; `runs` in the order of their legends."""
    styles = run_styles(runs)
    plot_fid(runs, styles, out_dir / FIGURES["fid"])
    plot_is(runs, styles, out_dir / FIGURES["is"])
    plot_losses(runs, styles, out_dir / FIGURES["losses"], smoothing)
    plot_samples(runs, out_dir / FIGURES["samples"], sample_columns)
    plot_prdc(runs, styles, out_dir / FIGURES["prdc"], DPI)


def run_styles(runs: list[LoadedRun]) -> dict[str, dict[str, Any]]:
    """Colour and line style per run: one hue per (method, loss); ordinary light and dashed,
    unbalanced dark and solid."""
    families: dict[tuple[str, str], int] = {}
    out = {}
    for run in runs:
        fam = families.setdefault((run.info.method, run.info.loss), len(families))
        light, dark = _FAMILIES[fam % len(_FAMILIES)]
        init = run.info.init
        out[run.key] = {
            "color": dark if init == UNBALANCED_INIT else light,
            "linestyle": "-" if init == UNBALANCED_INIT else "--" if init == ORDINARY_INIT else ":",
            "marker": "o" if init == UNBALANCED_INIT else "s",
        }
    return out


def _step_axis(ax) -> None:
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}")
    )
    ax.set_xlabel("training step")
    ax.grid(True, alpha=0.3, linewidth=0.6)


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _finish_metric(fig: Figure, ax, labels: tuple[str, str, str], drawn: bool, path: Path) -> None:
    """Axes, title and legend of a metric-vs-step figure; `labels` = (y label, title, the note
    shown when nothing was `drawn`)."""
    ylabel, title, empty = labels
    _step_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not drawn:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    else:
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    _save(fig, path)


def _distinct_floor(runs: list[LoadedRun], name: str) -> list[float]:
    values = sorted(
        {round(floor_numbers(r)[name], 9) for r in runs if finite(floor_numbers(r)[name])}
    )
    return values


def plot_fid(runs: list[LoadedRun], styles: dict, path: Path) -> None:
    fig = Figure(figsize=(9.0, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    values = []
    for run in runs:
        keep = np.isfinite(run.fid)
        if not keep.any():
            continue
        st = styles[run.key]
        ax.plot(
            run.fid_steps[keep],
            run.fid[keep],
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
            markersize=3.5,
            linewidth=1.8,
            label=run.key,
        )
        values.extend(run.fid[keep].tolist())
    positive = [v for v in values if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 8
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))
    lo, hi = (min(values), max(values)) if values else (math.nan, math.nan)
    for i, floor in enumerate(_distinct_floor(runs, "fid")):
        label = f"floor (held-out vs train): {floor:.1f}" if i == 0 else None
        # A floor far below the curves would squash them: list it in the legend only.
        far = bool(values) and (floor < lo / 2.5 if log else floor < lo - 0.6 * (hi - lo))
        if far:
            if label:
                ax.plot([], [], color="0.35", linestyle=":", label=label + " (below the axis)")
        else:
            ax.axhline(floor, color="0.35", linestyle=":", linewidth=1.2, label=label)
            values.append(floor)
    labels = ("FID (lower is better)", "FID vs training step", "no FID values")
    _finish_metric(fig, ax, labels, bool(values), path)


def plot_is(runs: list[LoadedRun], styles: dict, path: Path) -> None:
    fig = Figure(figsize=(9.0, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    any_value = False
    for run in runs:
        keep = np.isfinite(run.isc_mean)
        if not keep.any():
            continue
        any_value = True
        st = styles[run.key]
        x, y = run.fid_steps[keep], run.isc_mean[keep]
        ax.plot(
            x,
            y,
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
            markersize=3.5,
            linewidth=1.8,
            label=run.key,
        )
        sd = np.where(np.isfinite(run.isc_std[keep]), run.isc_std[keep], 0.0)
        if (sd > 0).any():
            ax.fill_between(x, y - sd, y + sd, color=st["color"], alpha=0.15, linewidth=0)
    for i, floor in enumerate(_distinct_floor(runs, "isc_mean")):
        ax.axhline(
            floor,
            color="0.35",
            linestyle=":",
            linewidth=1.2,
            label=f"real held-out data: {floor:.2f}" if i == 0 else None,
        )
        any_value = True
    title = "Inception Score vs training step (band: ± std over splits)"
    reasons = [r for r in map(isc_unavailable, runs) if r]
    empty = textwrap.fill(f"Inception Score {reasons[0]}", 70) if reasons else "no IS values"
    labels = ("Inception Score (higher is better)", title, empty)
    _finish_metric(fig, ax, labels, any_value, path)


def _moving_average(y: np.ndarray, window: int) -> tuple[np.ndarray, int]:
    """NaN-aware centred moving average; returns the values and the offset of the first one."""
    window = max(1, min(int(window), len(y)))
    finite = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    total = csum[window:] - csum[:-window]
    count = ccount[window:] - ccount[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return avg, window // 2


def _groups(runs: list[LoadedRun]) -> list[tuple[tuple[str, str], list[LoadedRun]]]:
    groups: dict[tuple[str, str], list[LoadedRun]] = {}
    for run in runs:
        groups.setdefault((run.info.method, run.info.loss), []).append(run)
    return list(groups.items())


def _loss_label(run: LoadedRun, which: str) -> str:
    mean, std = run.loss_stats[f"{which}_mean"], run.loss_stats[f"{which}_std"]
    return f"{run.key}: {fmt(mean, 4)} ± {fmt(std, 4)}"


def plot_losses(runs: list[LoadedRun], styles: dict, path: Path, smoothing: int) -> None:
    groups = _groups(runs)
    fig = Figure(figsize=(11.0, 0.5 + 3.1 * len(groups)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for row, ((method, loss), members) in enumerate(groups):
        for col, (which, name) in enumerate((("d_loss", "discriminator"), ("g_loss", "generator"))):
            ax = axes[row][col]
            lows, highs = [], []
            drawn = [r for r in members if np.isfinite(getattr(r, which)).any()]
            smooth = smoothing > 1
            # Pass 1: raw losses, faint; pass 2: moving averages on top of every raw line.
            for run in drawn:
                y = getattr(run, which)
                st = styles[run.key]
                ax.plot(
                    run.loss_steps,
                    y,
                    color=st["color"],
                    linewidth=0.6,
                    alpha=0.22 if smooth else 0.9,
                    label=None if smooth else _loss_label(run, which),
                )
                finite = y[np.isfinite(y)]
                lows.append(np.percentile(finite, 1))
                highs.append(np.percentile(finite, 99))
            for run in drawn if smooth else []:
                y = getattr(run, which)
                avg, offset = _moving_average(y, smoothing)
                ax.plot(
                    run.loss_steps[offset : offset + len(avg)],
                    avg,
                    color=styles[run.key]["color"],
                    linewidth=1.6,
                    label=_loss_label(run, which),
                )
                if np.isfinite(avg).any():
                    lows.append(np.nanmin(avg))
                    highs.append(np.nanmax(avg))
            if lows:
                lo, hi = min(lows), max(highs)
                pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
                ax.set_ylim(lo - pad, hi + pad)
                ax.legend(
                    fontsize=8,
                    loc="upper right",
                    title="mean ± std",
                    title_fontsize=8,
                    framealpha=0.85,
                )
            else:
                ax.text(0.5, 0.5, "no losses", ha="center", va="center", transform=ax.transAxes)
            _step_axis(ax)
            ax.set_ylabel(f"{name[0].upper()} loss")
            ax.set_title(f"{method} / loss {loss} — {name}", fontsize=10)
    smoothed = f"bold: moving average over {smoothing} steps; " if smoothing > 1 else ""
    fig.suptitle(
        f"Training losses (faint: every step; {smoothed}"
        "y-range clipped to the 1st–99th percentile)",
        fontsize=10,
    )
    _save(fig, path)


def _sample_steps(runs: list[LoadedRun], columns: int) -> list[int]:
    """A few checkpoint steps spread over training (first and last included)."""
    sets = [set(r.samples) for r in runs if r.samples]
    if not sets or columns <= 0:
        return []
    available = sorted(set.intersection(*sets)) or sorted(set.union(*sets))
    if len(available) <= columns:
        return available
    first, last = available[0], available[-1]
    # Geometric spacing favours the early steps the paper's claims are about.
    if first > 0:
        targets = np.geomspace(first, last, columns)
    else:
        targets = np.concatenate([[0], np.geomspace(max(available[1], 1), last, columns - 1)])
    chosen: list[int] = []
    for t in targets:
        pick = min(available, key=lambda s: (abs(s - t), s))
        if pick not in chosen:
            chosen.append(pick)
    # Fill any gaps (duplicates) with evenly spaced indices.
    for i in np.linspace(0, len(available) - 1, columns).round().astype(int):
        if len(chosen) >= columns:
            break
        if available[i] not in chosen:
            chosen.append(available[i])
    return sorted(chosen)


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def plot_samples(runs: list[LoadedRun], path: Path, columns: int) -> None:
    steps = _sample_steps(runs, columns)
    if not steps:
        fig = Figure(figsize=(6.0, 1.5), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no sample grids found", ha="center", va="center", fontsize=12)
        _save(fig, path)
        return
    cell = 2.1
    fig = Figure(
        figsize=(0.5 + cell * len(steps), 0.5 + cell * len(runs)), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(len(runs), len(steps), squeeze=False)
    for r, run in enumerate(runs):
        for c, step in enumerate(steps):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(f"step {fmt_step(step)}", fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{run.key}\n({role(run.info.init)})", fontsize=9)
            if not run.samples:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
                continue
            actual = min(run.samples, key=lambda s: (abs(s - step), s))
            try:
                image = _read_image(run.samples[actual])
            except (OSError, ValueError, SyntaxError) as exc:  # a broken PNG: note it, go on
                ax.text(
                    0.5,
                    0.5,
                    f"unreadable\n{type(exc).__name__}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                continue
            ax.imshow(image, interpolation="antialiased")
            if actual != step:
                ax.set_xlabel(f"(step {fmt_step(actual)})", fontsize=8)
    fig.suptitle("Samples at a fixed z over training", fontsize=11)
    _save(fig, path)
