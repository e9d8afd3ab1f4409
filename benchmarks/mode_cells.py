"""Benchmark — mode-coverage cells in parallel: the same 2-D cells of stage `modes` (grid25,
gan and wgan-gp with the settings of profiles/modes.yaml × 2 seeds) trained by
`ugan.modebench.runner.run_benchmark` with `workers: <cores>` (one process per core, one torch
thread each), against `workers: 1` (one after another in one process, torch on every core, as
the stage did before) measured in the same run; and, to separate the two effects, `workers: 1`
with one torch thread.

    python benchmarks/mode_cells.py [--steps 400] [--seeds 2] [--workers N]

Each way trains in its own temporary folder with its own sqlite MLflow store (created before the
clock starts), so none reuses another's cells; a way's time runs from `run_benchmark` to its
summary, worker processes' start included. A 1-seed, 5-step run first, untimed, pays this
process's first-use costs (lazy imports, plotting) that would otherwise fall on the reference.
Each way's `result.json` scores are compared with the reference's: they must be identical (each
cell is seeded). The 2-thread reference is sensitive to other load on the machine (torch's
threads wait for each other): run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from common import arguments, machine, report, table

from ugan.config.load import parse_params
from ugan.config.schema import ModelParams
from ugan.core.runtime import available_cores
from ugan.modebench.benchmarks import Inputs
from ugan.modebench.runner import Context, run_benchmark
from ugan.tracking.store import prepare_store

VARIANTS = {  # profiles/modes.yaml's
    "gan": {"init": "random"},
    "wgan-gp": {
        "init": "random",
        "loss": "wgan-gp",
        "n_critic": 5,
        "gp_weight": 0.1,
        "optim": {"lr": 0.0001, "beta1": 0.5, "beta2": 0.9},
    },
}


def entry(steps: int, seeds: int, workers: int):
    raw = {
        "benchmark": "grid25",
        "seeds": list(range(seeds)),
        "steps": steps,
        "batch_size": 100,
        "optim": {"lr": 0.001, "beta1": 0.5, "beta2": 0.999},
        "num_samples": 2000,
        "workers": workers,
        "variants": VARIANTS,
    }
    return parse_params({"modes": {"grid25": raw}}).modes["grid25"]


def one_way(steps: int, seeds: int, workers: int, threads: int) -> tuple[float, dict]:
    """Seconds of run_benchmark in a fresh folder and store; the cells' scores."""
    torch.set_num_threads(threads)
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mode-cells-") as tmp:
        os.chdir(tmp)  # resume states and spools of this way only
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = uri  # the workers inherit it
        prepare_store(uri)
        out = Path(tmp) / "modes" / "grid25"
        ctx = Context("grid25", entry(steps, seeds, workers), ModelParams(), Inputs(), out)
        try:
            start = time.perf_counter()
            run_benchmark(ctx)
            seconds = time.perf_counter() - start
        finally:
            os.chdir(home)
        scores = {
            p.parent.name: json.loads(p.read_text())["scores"]
            for p in sorted(out.glob("cells/*/result.json"))
        }
    return seconds, scores


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=available_cores())
    args = parser.parse_args()
    for name in ("MLFLOW_TRACKING_URI", "UGAN_JOBS", "UGAN_THREADS"):
        os.environ.pop(name, None)
    cores = available_cores()
    cells = len(VARIANTS) * args.seeds
    ways = {
        f"workers 1: one process, {cores} torch threads (before)": (1, cores),
        "workers 1: one process, 1 torch thread": (1, 1),
        f"workers {args.workers}: {args.workers} processes, 1 torch thread each": (
            args.workers,
            1,
        ),
    }
    one_way(5, 1, 1, cores)  # untimed: this process's lazy imports and first-use costs
    figures, reference = {}, None
    for label, (workers, threads) in ways.items():
        seconds, scores = one_way(args.steps, args.seeds, workers, threads)
        reference = reference or (seconds, scores)
        figures[label] = {
            "workers": workers,
            "torch_threads": threads,
            "seconds": seconds,
            "ratio": seconds / reference[0],
            "scores_identical": scores == reference[1],
        }
        print(f"{label}: {seconds:.1f} s", flush=True)
    rows = [
        [
            label,
            f"{f['seconds']:.1f}",
            f"{f['ratio']:.2f}",
            "yes" if f["scores_identical"] else "NO",
        ]
        for label, f in figures.items()
    ]
    print(f"\ngrid25, {cells} cells (gan, wgan-gp × {args.seeds} seeds), {args.steps} steps each")
    print(table(["way", "wall s", "÷ before", "scores identical"], rows))
    figures["cells"], figures["steps"] = cells, args.steps
    report(args, "mode_cells", machine(), figures)


if __name__ == "__main__":
    main()
