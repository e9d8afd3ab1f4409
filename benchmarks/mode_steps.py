"""Benchmark — one 2-D training step with fused Adam: milliseconds per step of each method of
profiles/repro-grid25.yaml (GAN, WGAN-GP, GAAN on grid25, GAAN Table 1's nets, batch 128, one
torch thread), its optimizers rebuilt fused (`perf.fused_optim: true`, what every stage does)
against the same method with torch's default CPU Adam (`fused_optim: false`), in the same run.

    python benchmarks/mode_steps.py [--steps 1000] [--rounds 3]

The reproduction rows of grid25 and ring8 are hours of these steps. Each round times every
(method, way) once, in turn, after 100 untimed steps; the best round of each is kept, so a burst
of other load on the machine does not decide the ratio. Until commit 55c83ca the fused kernel
never ran (the rebuilt optimizer's groups got the replaced one's `fused: None` back), so both ways
timed the same step.
"""

from __future__ import annotations

import time

import torch
import yaml
from common import ROOT, arguments, machine, report, table

from ugan.config.load import parse_params
from ugan.config.profiles import apply_profile, load_profile
from ugan.config.schema import ModelParams
from ugan.data.batches import InfiniteBatches
from ugan.modebench.benchmarks import Inputs, get_benchmark
from ugan.modebench.runner import random_init
from ugan.training.accel import Accel
from ugan.training.gan import build_method

WAYS = {"torch's default Adam": False, "fused Adam": True}


def entry():
    """grid25's benchmark entry as `ugan reproduce` runs it."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    merged, _ = apply_profile(base, load_profile("repro-grid25", ROOT / "profiles"))
    return parse_params(merged).modes["grid25"]


def ms_per_step(grid, data, variant: str, fused: bool, steps: int) -> float:
    arch = get_benchmark(grid.benchmark).arch(grid, ModelParams())
    run = grid.cell(variant, 0)
    torch.manual_seed(0)
    method = build_method(arch, run, random_init(arch, 0.02), 0.02)
    images, labels = data.train
    batches = InfiniteBatches(images, labels, run.gan.batch_size, seed=0)
    Accel(torch.device("cpu"), fused_optim=fused).prepare(method, batches)
    for _ in range(100):  # untimed: the first steps allocate the optimizer state
        method.train_step(batches.next)
    start = time.perf_counter()
    for _ in range(steps):
        method.train_step(batches.next)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a cell in the worker pool (ugan.modebench.pool)
    grid = entry()
    data = get_benchmark(grid.benchmark).data(grid, Inputs())  # 50k points, drawn once
    best: dict[tuple[str, str], float] = {}
    for round_ in range(args.rounds):
        for variant in grid.variants:
            for way, fused in WAYS.items():
                ms = ms_per_step(grid, data, variant, fused, args.steps)
                best[variant, way] = min(ms, best.get((variant, way), ms))
                print(f"round {round_ + 1}: {variant}, {way}: {ms:.2f} ms/step", flush=True)
    figures = {}
    rows = []
    for variant in grid.variants:
        plain, fused = best[variant, "torch's default Adam"], best[variant, "fused Adam"]
        figures[variant] = {"default_ms": plain, "fused_ms": fused, "ratio": fused / plain}
        rows.append([variant, f"{plain:.2f}", f"{fused:.2f}", f"{fused / plain:.2f}"])
    print(f"\ngrid25 (profiles/repro-grid25.yaml), one torch thread, best of {args.rounds} rounds")
    print(table(["variant", "default Adam ms/step", "fused ms/step", "÷ default"], rows))
    figures["steps"], figures["rounds"] = args.steps, args.rounds
    report(args, "mode_steps", machine(), figures)


if __name__ == "__main__":
    main()
