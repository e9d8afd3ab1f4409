"""The report's mode-coverage section: the `modes` stage's tables and, when a benchmark was
scored at more than one checkpoint, its headline metric against the step (`FIGURE`).

The figure file is written on every report (a panel that says why it is empty when no benchmark
kept checkpoints), so the `report` stage always has the outputs DVC expects; the markdown embeds
it only when it shows curves.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ugan.core.io import atomic_path
from ugan.modebench.tables import headline_curves
from ugan.modebench.tables import markdown as modes_markdown

FIGURE = "modes_trajectories.png"
EMPTY = (
    "no mode-coverage benchmark was scored at more than one step\n"
    "(a benchmark's `checkpoint_every` below its `steps` scores each checkpoint)"
)


def _empty_figure(path: Path) -> None:
    fig = Figure(figsize=(6.0, 1.6), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, EMPTY, ha="center", va="center", fontsize=9, wrap=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def modes_section(modes: dict | None, out_dir: Path) -> str:
    """report.md's mode-coverage section for `modes` (the `benchmarks` of metrics/modes.json;
    none: no section) and `out_dir / FIGURE`, drawn either way."""
    path = Path(out_dir) / FIGURE
    drawn = headline_curves(modes, path) if modes else None
    if drawn is None:
        _empty_figure(path)
    if not modes:
        return ""
    text = "\n## Mode-coverage benchmarks\n\n" + modes_markdown(modes) + "\n"
    if drawn is not None:
        text += (
            "\nEach benchmark's headline metric at every checkpoint scored (the mean over seeds "
            "with its 95 % interval, each seed faint, the real data's level dotted):\n\n"
            f"![mode coverage at each checkpoint]({FIGURE})\n"
        )
    return text
