"""The report's precision / recall / density / coverage: the table of the final checkpoints and
the figure of the four curves over training (`FIGURE`, `plot_prdc`).

Precision is the share of generated samples that look real (fidelity), recall the share of the
real data the generator reaches (diversity); density (≈ 1 for samples like the real ones, above
1 when they crowd dense real regions) and coverage are their outlier-robust forms (Naeem et al.
2020). A collapsed generator keeps a high precision and loses recall and coverage. The real data
scores itself as the floor does (train split against the held-out one). Pure but for the file
`plot_prdc` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ugan.core.io import atomic_path
from ugan.core.markdown import md_table
from ugan.reporting.formatting import DASH, finite, fmt, fmt_step
from ugan.reporting.inputs import PRDC_COLUMNS, LoadedRun
from ugan.reporting.scoring import scoring_of

FIGURE = "prdc.png"
HEADERS = ("precision ↑", "recall ↑", "density", "coverage ↑")
TITLES = {
    "precision": "precision ↑ (fidelity)",
    "recall": "recall ↑ (diversity)",
    "density": "density (≈ 1 like real)",
    "coverage": "coverage ↑",
}


def has_prdc(run: LoadedRun) -> bool:
    return any(np.isfinite(v).any() for v in run.prdc.values())


def final_prdc(run: LoadedRun) -> dict[str, float]:
    """metrics.json's final precision … coverage; the last fidelity.csv row where not recorded."""
    recorded = run.metrics.get("final") or {}
    out = {}
    for name in PRDC_COLUMNS:
        column = run.prdc.get(name, np.array([]))
        fallback = float(column[-1]) if len(column) else float("nan")
        out[name] = float(recorded[name]) if finite(recorded.get(name)) else fallback
    return out


def prdc_section(runs: list[LoadedRun]) -> list[str]:
    """The table of the final checkpoints (and the real data's own scores) and the figure; no
    section when no run recorded PRDC (an evaluation from before it)."""
    if not any(has_prdc(r) for r in runs):
        return []
    rows = []
    for run in runs:
        final = final_prdc(run)
        step = (run.metrics.get("final") or {}).get("step")
        n = scoring_of(run).num_samples
        rows.append(
            [
                run.key,
                fmt_step(step) if finite(step) else DASH,
                f"{n:,}" if n is not None else DASH,
                *(fmt(final[name], 3) for name in PRDC_COLUMNS),
            ]
        )
    floors = {
        tuple(round(float((r.metrics.get("floor") or {}).get(n, np.nan)), 9) for n in PRDC_COLUMNS)
        for r in runs
    }
    if len(floors) == 1 and all(finite(v) for v in next(iter(floors))):
        rows.append(["real (held-out vs train)", DASH, DASH, *(fmt(v, 3) for v in floors.pop())])
    k = scoring_of(runs[0]).nearest_k
    return [
        "## Precision, recall, density, coverage (final checkpoint)",
        "",
        (
            "On the features FID uses, with k-nearest-neighbour balls"
            + (f" (k = {k})" if k else "")
            + ": precision = generated samples that fall on the real data (fidelity), recall = "
            "real samples the generator reaches (diversity; Kynkäänniemi et al. 2019); density "
            "(≈ 1 for samples like the real ones) and coverage are their outlier-robust forms "
            "(Naeem et al. 2020). A collapsed generator keeps its precision and loses recall and "
            "coverage."
        ),
        "",
        md_table(["run", "step", "N", *HEADERS], rows, "lrrrrrr"),
        "",
        f"![Precision, recall, density and coverage vs training step]({FIGURE})",
        "",
    ]


def plot_prdc(runs: list[LoadedRun], styles: dict, path: Path, dpi: int) -> None:
    """One panel per metric, one line per run (`styles` from `figures.run_styles`)."""
    fig = Figure(figsize=(10.0, 6.4), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    drawn = False
    for ax, name in zip(axes, PRDC_COLUMNS, strict=True):
        for run in runs:
            values = run.prdc.get(name, np.array([]))
            keep = np.isfinite(values)
            if not keep.any():
                continue
            st = styles[run.key]
            ax.plot(
                run.fid_steps[keep],
                values[keep],
                color=st["color"],
                linestyle=st["linestyle"],
                marker=st["marker"],
                markersize=3.0,
                linewidth=1.6,
                label=run.key if name == PRDC_COLUMNS[0] else None,
            )
            drawn = True
        ax.set_title(TITLES[name], fontsize=10)
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if name != "density":
            ax.set_ylim(-0.03, 1.03)
    for ax in axes[2:]:
        ax.set_xlabel("training step")
    if drawn:
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    else:
        axes[0].text(0.5, 0.5, "no PRDC values", ha="center", va="center")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
