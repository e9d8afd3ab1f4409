"""The report's entry point: `build_report` reads every run, compares the pairs, and writes into
one folder ``report.md``, ``fid.png``, ``is.png``, ``losses.png``, ``samples.png``, ``prdc.png``,
``modes_trajectories.png`` and ``report.json``, every file atomically.

Runs are ordered pair by pair (ordinary, then unbalanced), then the runs without a pair; every
table, legend and summary entry follows that order. Runs scored with another feature network or
sample count than the rest (`ugan.reporting.scoring`) are left out of all of it: the report
lists them and why (report.json's "left_out"), and a warning says so.

report.json holds everything the report computed (per run, per pair, the claims, the file
names, the runs left out); it is JSON-safe: numpy values become Python ones, NaN and inf become
null, paths become strings. The DVC metrics are the evaluate
stages' `score.json` files (`ugan.evaluation.evaluate`), so an experiment that runs some cells
only (a grid's cell on a worker) shows its scores too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ugan.core.io import atomic_write_json, atomic_write_text
from ugan.reporting.claims import claims_table
from ugan.reporting.comparisons import (
    best_fid,
    compare_pair,
    final_numbers,
    floor_numbers,
    isc_unavailable,
    pair_runs,
    role,
    verdict_line,
)
from ugan.reporting.figures import FIGURES, draw_figures
from ugan.reporting.generators import generator_sections
from ugan.reporting.inputs import LoadedRun, RunInfo, read_run
from ugan.reporting.markdown import render_report
from ugan.reporting.modes_section import FIGURE as MODES_FIGURE
from ugan.reporting.modes_section import modes_section
from ugan.reporting.prdc import final_prdc
from ugan.reporting.scoring import mismatch, scoring_of, split_comparable

# The files besides the run figures: the markdown, everything as JSON, the mode-coverage curves.
FILES = {"report": "report.md", "details": "report.json", "modes": MODES_FIGURE}


def build_report(
    runs: list[RunInfo],
    out_dir: Path,
    *,
    early_checkpoints: int = 3,
    smoothing: int = 25,
    sample_columns: int = 5,
    modes: dict | None = None,
) -> dict:
    """Write report.md, report.json and the figures (FILES, FIGURES) into
    `out_dir` and return the summary dict (the content of report.json).

    summary = {"runs": {key: per-run numbers}, "pairs": [per-pair comparison],
               "unpaired": [keys], "files": {...}, "early_checkpoints": .., "smoothing": ..}
    """
    if not runs:
        raise ValueError("build_report needs at least one run")
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate run keys: {keys}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    loaded = {r.key: read_run(r) for r in runs}
    kept, left_out = _comparable(list(loaded.values()))
    runs = [r for r in runs if r.key in {k.key for k in kept}]
    keys = [r.key for r in runs]
    pairs = pair_runs(runs)
    paired_keys = [k for o, u in pairs for k in (o.key, u.key)]
    unpaired = [k for k in keys if k not in paired_keys]
    order = paired_keys + unpaired
    ordered = [loaded[k] for k in order]
    comparisons = [compare_pair(loaded[o.key], loaded[u.key], early_checkpoints) for o, u in pairs]
    for cmp in comparisons:
        cmp["fid_singular"] = scoring_of(loaded[cmp["ordinary"]]).fid_singular
        cmp["verdict"] = verdict_line(cmp)

    draw_figures(ordered, out_dir, smoothing, sample_columns)

    claims = claims_table(comparisons)
    summary = _json_safe(
        {
            "runs": {run.key: _run_summary(run) for run in ordered},
            "pairs": comparisons,
            "claims": claims,
            "unpaired": unpaired,
            "early_checkpoints": early_checkpoints,
            "smoothing": smoothing,
            "files": {**FILES, **FIGURES},
            "left_out": {r.key: asdict(scoring_of(r)) for r in left_out},
        }
    )
    markdown = render_report(
        ordered, comparisons, claims, unpaired, early_checkpoints, smoothing, left_out
    )
    markdown += modes_section(modes, out_dir)  # the `modes` stage's benchmarks, when configured
    markdown += generator_sections(ordered, out_dir)  # EMA beside G, latent interpolations
    atomic_write_text(out_dir / "report.md", markdown)
    atomic_write_json(out_dir / FILES["details"], summary)
    return summary


def _run_summary(run: LoadedRun) -> dict[str, Any]:
    """report.json's entry of one run."""
    best, best_step = best_fid(run)
    return {
        "init": run.info.init,
        "loss": run.info.loss,
        "method": run.info.method,
        "role": role(run.info.init),
        "steps": run.fid_steps,
        "fid": run.fid,
        "isc_mean": run.isc_mean,
        "isc_unavailable": isc_unavailable(run),
        "kid_mean": run.kid_mean,
        "final": final_numbers(run),
        "best_fid": best,
        "best_fid_step": best_step,
        "losses": run.loss_stats,
        "floor": floor_numbers(run),
        "last_step": int(run.loss_steps[-1]) if len(run.loss_steps) else None,
        "sample_steps": list(run.samples),
        "prdc": final_prdc(run),
        "scoring": asdict(scoring_of(run)),
        "ema": run.metrics.get("ema"),  # the weight average's scores (gan.ema), or None
    }


def _comparable(runs: list[LoadedRun]) -> tuple[list[LoadedRun], list[LoadedRun]]:
    """`split_comparable`, with a warning naming the runs left out."""
    kept, left_out = split_comparable(runs)
    if left_out:
        warnings.warn(mismatch(kept, left_out), UserWarning, stacklevel=3)
    return kept, left_out


def _json_safe(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN / inf to None, Paths to str."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj
