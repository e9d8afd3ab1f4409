"""What the report reads of one run: the files the earlier stages wrote for run key R.

* ``runs/R/losses.csv`` (``step,d_loss,g_loss[,...]``, one row per training step),
* ``runs/R/samples/step_NNNNNN.png`` (sample grids at a fixed z),
* ``evaluation/R/fidelity.csv`` (``step,fid,isc_mean,isc_std,kid_mean,kid_std``, and where
  recorded ``precision,recall,density,coverage``: NaN in a file from before them),
* ``evaluation/R/metrics.json`` (numbers only: final numbers, best FID, loss stats, floor),
* ``evaluation/R/info.json`` (run, init / loss / method, why IS is missing, …).

`load_run` locates a run's files and reads its init / loss / method from info.json (a
`RunInfo`); `read_run`
reads all of them into a `LoadedRun`. A missing file raises `InputMissingError` naming it; a
file that does not hold what is expected raises `InputError`. CSV columns come back as float
arrays sorted by step, the last row kept when a step repeats (a resumed run). Nothing here
computes a comparison or writes a file.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ugan.core.errors import InputError, InputMissingError

SAMPLE_RE = re.compile(r"^step_(\d+)\.png$")
PRDC_COLUMNS = ("precision", "recall", "density", "coverage")  # ugan.evaluation.prdc.PRDC_KEYS


@dataclass
class RunInfo:
    key: str
    init: str
    loss: str
    method: str
    losses_csv: Path
    samples_dir: Path
    fidelity_csv: Path
    metrics_json: Path
    info_json: Path | None = None  # default: metrics.json's sibling info.json

    def __post_init__(self) -> None:
        if self.info_json is None:
            self.info_json = Path(self.metrics_json).with_name("info.json")


def load_run(key: str, runs_dir: Path, eval_dir: Path) -> RunInfo:
    """Locate the inputs of run `key` and read its init / loss / method from info.json.

    Raises FileNotFoundError naming the missing file when metrics.json, info.json, losses.csv
    or fidelity.csv is absent. A missing samples folder is allowed (the sample figure then shows
    an empty cell for that run).
    """
    runs_dir, eval_dir = Path(runs_dir), Path(eval_dir)
    losses_csv = runs_dir / key / "losses.csv"
    samples_dir = runs_dir / key / "samples"
    fidelity_csv = eval_dir / key / "fidelity.csv"
    metrics_json = eval_dir / key / "metrics.json"
    info_json = eval_dir / key / "info.json"
    for path in (metrics_json, info_json, losses_csv, fidelity_csv):
        if not path.is_file():
            raise InputMissingError(f"run {key!r}: missing input file {path}")
    info = _read_json(info_json)
    missing = [name for name in ("init", "loss", "method") if name not in info]
    if missing:
        raise InputError(f"{info_json}: missing field(s) {missing}")
    if "run" in info and str(info["run"]) != key:
        raise InputError(f"{info_json} describes run {info['run']!r}, expected {key!r}")
    return RunInfo(
        key=key,
        init=str(info["init"]),
        loss=str(info["loss"]),
        method=str(info["method"]),
        losses_csv=losses_csv,
        samples_dir=samples_dir,
        fidelity_csv=fidelity_csv,
        metrics_json=metrics_json,
        info_json=info_json,
    )


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        obj = json.load(handle)
    if not isinstance(obj, dict):
        raise TypeError(f"{path} holds {type(obj).__name__}, expected an object")
    return obj


def to_float(text: Any) -> float:
    """`text` as a float; NaN when it is missing or not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Columns `required` (and `optional`, NaN where absent) of a CSV as float arrays, sorted by
    step, last row per step kept."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path} is empty (no header)")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; header is {header}")
        index = {c: header.index(c) for c in required}
        index |= {c: header.index(c) if c in header else len(header) for c in optional}
        cols: dict[str, list[float]] = {c: [] for c in index}
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            for c, i in index.items():
                cols[c].append(to_float(row[i]) if i < len(row) else math.nan)
    out = {c: np.asarray(v, dtype=float) for c, v in cols.items()}
    steps = out["step"]
    keep = np.isfinite(steps)
    out = {c: v[keep] for c, v in out.items()}
    # Sort by step; on duplicate steps (a resumed run) keep the last row written.
    order = np.argsort(out["step"], kind="stable")
    out = {c: v[order] for c, v in out.items()}
    steps = out["step"]
    if len(steps):
        last = np.ones(len(steps), dtype=bool)
        last[:-1] = steps[1:] != steps[:-1]
        out = {c: v[last] for c, v in out.items()}
    return out


@dataclass
class LoadedRun:
    """Everything the report uses of one run, read from its files by `read_run`."""

    info: RunInfo
    metrics: dict  # metrics.json: numbers only
    fid_steps: np.ndarray
    fid: np.ndarray
    isc_mean: np.ndarray
    isc_std: np.ndarray
    kid_mean: np.ndarray
    kid_std: np.ndarray
    loss_steps: np.ndarray
    d_loss: np.ndarray
    g_loss: np.ndarray
    loss_stats: dict[str, float]
    samples: dict[int, Path] = field(default_factory=dict)
    about: dict = field(default_factory=dict)  # info.json: the words and bookkeeping
    prdc: dict[str, np.ndarray] = field(default_factory=dict)  # precision … coverage per step

    @property
    def key(self) -> str:
        return self.info.key

    def fid_at(self, step: int) -> float:
        hit = np.nonzero(self.fid_steps == step)[0]
        return float(self.fid[hit[-1]]) if len(hit) else math.nan

    def isc_at(self, step: int) -> float:
        hit = np.nonzero(self.fid_steps == step)[0]
        return float(self.isc_mean[hit[-1]]) if len(hit) else math.nan

    def finite_fid_steps(self) -> list[int]:
        return [int(s) for s, f in zip(self.fid_steps, self.fid, strict=True) if math.isfinite(f)]


def read_run(info: RunInfo) -> LoadedRun:
    """Read the files of `info`. Loss mean / std come from metrics.json when it records all
    four, else from losses.csv (``loss_stats["source"]`` says which)."""
    for path in (info.metrics_json, info.info_json, info.losses_csv, info.fidelity_csv):
        if not Path(path).is_file():
            raise InputMissingError(f"run {info.key!r}: missing input file {path}")
    metrics = _read_json(Path(info.metrics_json))
    about = _read_json(Path(info.info_json))
    fidelity = _read_csv(
        Path(info.fidelity_csv),
        ("step", "fid", "isc_mean", "isc_std", "kid_mean", "kid_std"),
        PRDC_COLUMNS,
    )
    losses = _read_csv(Path(info.losses_csv), ("step", "d_loss", "g_loss"))
    stats: dict[str, float] = {}
    recorded = metrics.get("losses") or {}
    names = ("d_loss_mean", "d_loss_std", "g_loss_mean", "g_loss_std")
    if all(math.isfinite(to_float(recorded.get(n))) for n in names):
        stats = {n: float(recorded[n]) for n in names}
        stats["source"] = "metrics.json"  # type: ignore[assignment]
    else:
        for which in ("d_loss", "g_loss"):
            values = losses[which][np.isfinite(losses[which])]
            stats[f"{which}_mean"] = float(values.mean()) if len(values) else math.nan
            stats[f"{which}_std"] = float(values.std()) if len(values) else math.nan
        stats["source"] = "losses.csv"  # type: ignore[assignment]
    samples: dict[int, Path] = {}
    samples_dir = Path(info.samples_dir)
    if samples_dir.is_dir():
        for path in samples_dir.iterdir():
            match = SAMPLE_RE.match(path.name)
            if match and path.is_file():
                samples[int(match.group(1))] = path
    return LoadedRun(
        info=info,
        metrics=metrics,
        fid_steps=fidelity["step"].astype(np.int64),
        fid=fidelity["fid"],
        isc_mean=fidelity["isc_mean"],
        isc_std=fidelity["isc_std"],
        kid_mean=fidelity["kid_mean"],
        kid_std=fidelity["kid_std"],
        loss_steps=losses["step"],
        d_loss=losses["d_loss"],
        g_loss=losses["g_loss"],
        loss_stats=stats,
        samples=dict(sorted(samples.items())),
        about=about,
        prdc={name: fidelity[name] for name in PRDC_COLUMNS},
    )
