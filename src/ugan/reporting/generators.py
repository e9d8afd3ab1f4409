"""The report's sections on the generators themselves, after the comparisons: the weight
average (`gan.ema`) scored beside the raw generator, and the final latent interpolations.

Both read what the evaluate stage wrote next to metrics.json (`ugan.evaluation.ema`,
`ugan.evaluation.interpolations`): the EMA section appears when some run was trained with EMA,
the interpolation section when some run has grids. Images are linked relative to the report's
folder, as the figures are. Pure functions of the loaded runs and the files they name.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from ugan.core.markdown import md_table
from ugan.reporting.formatting import fmt, fmt_step
from ugan.reporting.inputs import LoadedRun

GRID_RE = re.compile(r"^step_(\d+)_(linear|slerp)\.png$")


def generator_sections(runs: list[LoadedRun], report_dir: Path) -> str:
    """Markdown appended to report.md ("" when there is nothing to show)."""
    return _ema_section(runs) + _interpolation_section(runs, Path(report_dir))


def _eval_dir(run: LoadedRun) -> Path:
    return Path(run.info.metrics_json).parent


def _ema_fids(run: LoadedRun) -> dict[int, float]:
    """Step → the EMA generator's FID, from fidelity_ema.csv (empty without EMA)."""
    path = _eval_dir(run) / "fidelity_ema.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(r["step"]): float(r["fid"]) for r in csv.DictReader(handle)}


def _ema_section(runs: list[LoadedRun]) -> str:
    averaged = [(run, _ema_fids(run)) for run in runs]
    averaged = [(run, fids) for run, fids in averaged if fids]
    if not averaged:
        return ""
    summary, steps = [], []
    for run, fids in averaged:
        ema = run.metrics.get("ema", {})
        summary.append(
            [
                run.key,
                fmt(run.metrics.get("final", {}).get("fid"), 2),
                fmt(ema.get("final", {}).get("fid"), 2),
                _at(run.metrics.get("best_fid"), run.metrics.get("best_fid_step")),
                _at(ema.get("best_fid"), ema.get("best_fid_step")),
            ]
        )
        for step, fid in fids.items():
            steps.append([run.key, fmt_step(step), fmt(run.fid_at(step), 2), fmt(fid, 2)])
    header = ["run", "final FID (G)", "final FID (EMA)", "best FID (G)", "best FID (EMA)"]
    return (
        "\n## Weight average (EMA) beside the raw generator\n\n"
        "Runs trained with `gan.ema` keep an exponential moving average of G's weights; each "
        "checkpoint's average is scored on the same latents as G. With EMA on, the average is "
        "the run's MLflow model and the one the champion check compares.\n\n"
        + md_table(header, summary, "lrrrr")
        + "\n\nPer checkpoint:\n\n"
        + md_table(["run", "step", "FID (G)", "FID (EMA)"], steps, "lrrr")
        + "\n"
    )


def _at(fid, step) -> str:
    return fmt(fid, 2) + (f" (step {fmt_step(step)})" if step is not None else "")


def final_grids(run: LoadedRun) -> tuple[int | None, dict[str, Path]]:
    """The last evaluated step with interpolation grids and its grids by mode."""
    folder = _eval_dir(run) / "interpolations"
    found: dict[int, dict[str, Path]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = GRID_RE.match(path.name)
            if match:
                found.setdefault(int(match.group(1)), {})[match.group(2)] = path
    if not found:
        return None, {}
    step = max(found)
    return step, dict(sorted(found[step].items()))


def _interpolation_section(runs: list[LoadedRun], report_dir: Path) -> str:
    blocks = []
    for run in runs:
        step, grids = final_grids(run)
        if step is None:
            continue
        links = [
            f"{mode}:\n\n![{run.key} {mode} interpolations, step {step}]"
            f"({Path(os.path.relpath(path, report_dir)).as_posix()})"
            for mode, path in grids.items()
        ]
        blocks.append(f"### {run.key} (step {fmt_step(step)})\n\n" + "\n\n".join(links))
    if not blocks:
        return ""
    return (
        "\n## Latent interpolations\n\n"
        "The final checkpoint of each run: each row walks from one fixed latent to another "
        "(the same pairs for every run), the first and last columns are G at the two latents. "
        "Linear paths for every prior; spherical (slerp) ones for a Gaussian prior, whose "
        "linear midpoints have an atypically small norm. G runs with frozen batch statistics. "
        "Every checkpoint's grids are in `evaluation/<run>/interpolations/`.\n\n"
        + "\n\n".join(blocks)
        + "\n"
    )
