"""Benchmark — stage process start: seconds from `python stages/<stage>.py` to its first work
(the stage module and everything it imports loaded, params parsed), against `python -c "import
torch"`, the floor every stage pays, measured in the same run (median of `--repeat` fresh
processes each). Each process then ends as Python ends it (the teardown of every module); the
last column ends it as a finished stage now does (`ugan.core.runtime.exit_now`), so the
difference is the teardown a stage no longer pays.

    python benchmarks/stage_start.py [--repeat 5]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import ROOT, arguments, machine, report, table

STAGES = (
    "prepare",
    "train_classifier",
    "pretrain_vae",
    "transfer",
    "train_gan",
    "evaluate",
    "report",
)
# Import the stage file without running its main, then parse params as main would first.
LOAD = (
    "import runpy; runpy.run_path('stages/{stage}.py', run_name='benchmark'); "
    "from ugan.config.load import load_params; load_params('params.yaml')"
)
FAST_EXIT = "; from ugan.core.runtime import exit_now; exit_now()"


def seconds(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    floor = seconds("import torch", args.repeat)
    figures = {"import torch": {"seconds": floor, "ratio": 1.0}}
    for stage in STAGES:
        spent = seconds(LOAD.format(stage=stage), args.repeat)
        fast = seconds(LOAD.format(stage=stage) + FAST_EXIT, args.repeat)
        figures[stage] = {"seconds": spent, "ratio": spent / floor, "exit_now_seconds": fast}
    rows = [
        [name, f"{f['seconds']:.2f}", f"{f['ratio']:.2f}×"]
        + [f"{f['exit_now_seconds']:.2f}" if "exit_now_seconds" in f else ""]
        for name, f in figures.items()
    ]
    heads = ["process", "start to first work, s", "÷ import torch", "ended by exit_now, s"]
    print(table(heads, rows))
    report(args, "stage_start", machine(), figures)


if __name__ == "__main__":
    main()
