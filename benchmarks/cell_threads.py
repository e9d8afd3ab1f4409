"""Benchmark — an odd number of runs side by side: `ugan run`'s cells (`train_gan@<run>` +
`evaluate@<run>`, 3 runs, 2 at a time on a 2-core CPU) with the live jobs count
(`UGAN_JOBS_FILE`: when a run ends and none is left to start, the ones still running take its
cores) against the same cells with each stage's threads fixed at its start (`cores / jobs`,
as before: the third run trained alone on one thread while the other core idled), in the same
run. Goal: the live count faster (ratio < 1), the scores as before.

    python benchmarks/cell_threads.py [--steps 300] [--lengths 1 1 1]

`--lengths 1 2 2` gives the runs 300, 600 and 600 steps: the third starts when the first ends,
beside the second, and trains on after the second ends (re-sized mid-run, as a grid of unequal
runs does: a WGAN's 5 critic steps beside a DCGAN).

A tiny project (a copy of src/, stages/, dvc.yaml, params.yaml) reproduces the shared upstream
once and is committed; each way then runs `side_by_side.run_cells` in its own copy of it, so both
do identical work from the same base. OMP_NUM_THREADS, UGAN_THREADS and UGAN_JOBS are removed
from the stages' environment, so each stage sizes its threads as `configure_threads` does for
a user.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from common import (
    arguments,
    commit_all,
    init_project,
    machine,
    merge,
    repo_params,
    report,
    sh,
    table,
)

UPSTREAM = ["train_classifier", "init_random", "pretrain_dae"]  # prepare comes with them
WAYS = {"fixed at start": False, "live count": True}
# As `ugan run` calls it (`side_by_side.cells_first`, after the shared stages): UGAN_JOBS set.
RUN_CELLS = (
    "import os, sys; from ugan.pipeline.side_by_side import run_cells; "
    "sys.exit(run_cells({keys!r}, {jobs}, dict(os.environ, UGAN_JOBS='{jobs}'), live={live}))"
)


def sizes(args) -> dict:
    return {
        "classifier": {"steps": 60, "min_accuracy": 0.0},
        "dae": {"steps": 10, "sample_every": 10},  # no rfgan run: the stage writes a marker
        "gan": {
            "steps": args.steps,
            "batch_size": 64,
            "checkpoint_every": max(1, args.steps // 2),
            "num_sample_images": 16,
        },
        "eval": {"num_samples": 500, "kid_subset_size": 250},
        "tracking": {"log_models": False},
        "device": "cpu",
    }


def run_keys(args) -> list[str]:
    return [f"s{seed}" for seed in range(1, len(args.lengths) + 1)]


def make_base(path: Path, args) -> dict:
    params = merge(repo_params(), sizes(args))
    params["runs"] = {
        key: {"init": "random", "seed": i, "steps": args.steps * length}
        for i, (key, length) in enumerate(zip(run_keys(args), args.lengths, strict=True))
    }
    env = init_project(path, params)
    _, seconds = sh(["dvc", "repro", *UPSTREAM], path, env)
    print(f"shared upstream reproduced once: {seconds:.0f} s", flush=True)
    commit_all(path, env, "benchmark base")
    return env


def one_way(base: Path, path: Path, env: dict, args, live: bool) -> dict:
    shutil.copytree(base, path, symlinks=True)
    env = env | {"PYTHONPATH": str(path / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{path}/m.db"}
    code = RUN_CELLS.format(keys=run_keys(args), jobs=args.jobs, live=live)
    log, seconds = sh([sys.executable, "-c", code], path, env)
    cells = {key: float(s) for key, s in re.findall(r"\[(\S+)\] done in (\d+) s", log)}
    for key in run_keys(args):
        if f"[{key}] Running stage 'train_gan@{key}'" not in log or key not in cells:
            raise RuntimeError(f"run {key} did not train:\n{log[-3000:]}")
    fids = {
        key: json.loads((path / "evaluation" / key / "score.json").read_text())[key]["fid"]
        for key in run_keys(args)
    }
    resized = re.findall(r"\[(\S+)\] torch threads (\d+) → (\d+)", log)
    return {"seconds": seconds, "cells_s": cells, "final_fid": fids, "resized": resized}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="GAN steps per run")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[1, 1, 1], help="each run's steps ÷ --steps"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cells at once")
    args = parser.parse_args()
    ways: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ugan-cell-threads-") as tmp_name:
        tmp = Path(tmp_name)
        env = make_base(tmp / "base", args)
        for i, (way, live) in enumerate(WAYS.items()):
            ways[way] = one_way(tmp / "base", tmp / f"way{i}", env, args, live)
            print(f"{way}: {ways[way]['seconds']:.1f} s", flush=True)
    fixed, live = (ways[way]["seconds"] for way in WAYS)
    rows = [
        [
            way,
            f"{f['seconds']:.1f}",
            f"{f['seconds'] / fixed:.2f}",
            ", ".join(f"{k} {v:.0f}" for k, v in f["cells_s"].items()),
            "; ".join(f"{k} {a} → {b}" for k, a, b in f["resized"]) or "—",
            ", ".join(f"{k} {v:.1f}" for k, v in f["final_fid"].items()),
        ]
        for way, f in ways.items()
    ]
    print(
        f"\n{len(args.lengths)} runs ({', '.join(str(args.steps * n) for n in args.lengths)} GAN "
        f"steps, batch 64) + evaluate, {args.jobs} at once\n"
    )
    heads = ["torch threads", "wall s", "÷ fixed", "cell s", "re-sized", "final FID"]
    print(table(heads, rows))
    print(f"\nlive count ÷ fixed at start: {live / fixed:.2f} (goal < 1)")
    figures = {"ways": ways, "ratio_live": live / fixed, "sizes": sizes(args)}
    figures["lengths"] = args.lengths
    report(args, "cell_threads", machine("cpu"), figures)


if __name__ == "__main__":
    main()
