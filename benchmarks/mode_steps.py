"""Benchmark — one 2-D training step with fused Adam: milliseconds per step of each method of
profiles/repro-grid25.yaml (GAN, WGAN-GP, GAAN on grid25, GAAN Table 1's nets, batch 128, one
torch thread), its optimizers rebuilt fused (`perf.fused_optim: true`, what every stage does)
against the same method with torch's default CPU Adam (`fused_optim: false`), in the same run.

    python benchmarks/mode_steps.py [--steps 1000] [--rounds 3]
    python benchmarks/mode_steps.py --row gaan-stacked-mnist-long [--device cuda]

`--row` times the variants of a reproduction row's benchmark instead, as `ugan reproduce` runs
them (Stacked MNIST reads data/prepared: `dvc repro prepare` first), on `--device`, and prints
the row's training time projected from the fused steps (its cells × steps, one at a time;
scoring not included): what `make gpu-check` runs to size `gaan-stacked-mnist-long`.

The reproduction rows of grid25 and ring8 are hours of these steps. Each round times every
(method, way) once, in turn, after 100 untimed steps; the best round of each is kept, so a burst
of other load on the machine does not decide the ratio. Until commit 55c83ca the fused kernel
never ran (the rebuilt optimizer's groups got the replaced one's `fused: None` back), so both ways
timed the same step.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml
from common import ROOT, arguments, machine, report, table

from ugan.config.load import parse_params
from ugan.config.profiles import apply_profile, load_profile
from ugan.config.schema import ModelParams
from ugan.data.batches import InfiniteBatches
from ugan.modebench.benchmarks import Inputs, get_benchmark
from ugan.modebench.runner import random_init
from ugan.pipeline.reproduce import row_params
from ugan.reporting.reproduction_rows import BY_NAME
from ugan.training.accel import Accel
from ugan.training.gan import build_method

WAYS = {"torch's default Adam": False, "fused Adam": True}
PROFILES = ROOT / "profiles"


def entry(row: str | None = None):
    """grid25's benchmark entry as `ugan reproduce` runs it, or the entry of reproduction row
    `row` (only the variants it reads)."""
    base = (ROOT / "params.yaml").read_text()
    if row is None:
        merged, _ = apply_profile(yaml.safe_load(base), load_profile("repro-grid25", PROFILES))
        return parse_params(merged).modes["grid25"]
    found = BY_NAME[row]
    text = row_params(found, base, PROFILES)
    return parse_params(yaml.safe_load(text)).modes[found.benchmark]


def ms_per_step(grid, data, variant: str, fused: bool, steps: int, device, warmup: int) -> float:
    arch = get_benchmark(grid.benchmark).arch(grid, ModelParams())
    run = grid.cell(variant, 0)
    torch.manual_seed(0)
    method = build_method(arch, run, random_init(arch, 0.02), 0.02)
    method.to(device)
    images, labels = data.train
    batches = InfiniteBatches(images, labels, run.gan.batch_size, seed=0, device=device)
    Accel(device, fused_optim=fused).prepare(method, batches)
    for _ in range(warmup):  # untimed: the first steps allocate the optimizer state
        method.train_step(batches.next)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        method.train_step(batches.next)
    _synchronize(device)  # CUDA runs ahead of the host: time the work, not the launches
    return (time.perf_counter() - start) / steps * 1e3


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def projected_hours(grid, fused_ms: dict[str, float]) -> float:
    """The entry's cells trained one after another: seeds × steps × ms per step, per variant."""
    seconds = sum(
        len(grid.seeds) * grid.cell(variant, 0).gan.steps * ms / 1e3
        for variant, ms in fused_ms.items()
    )
    return seconds / 3600


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100, help="untimed steps first")
    parser.add_argument("--row", choices=sorted(BY_NAME), help="a reproduction row's variants")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--prepared", type=Path, default=ROOT / Inputs.prepared, help="the prepared digits"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a cell in the worker pool (ugan.modebench.pool)
    device = torch.device(args.device)
    grid = entry(args.row)
    inputs = Inputs(prepared=args.prepared, classifier=ROOT / Inputs.classifier)
    data = get_benchmark(grid.benchmark).data(grid, inputs)  # drawn once
    best: dict[tuple[str, str], float] = {}
    for round_ in range(args.rounds):
        for variant in grid.variants:
            for way, fused in WAYS.items():
                ms = ms_per_step(grid, data, variant, fused, args.steps, device, args.warmup)
                best[variant, way] = min(ms, best.get((variant, way), ms))
                print(f"round {round_ + 1}: {variant}, {way}: {ms:.2f} ms/step", flush=True)
    figures = {}
    rows = []
    for variant in grid.variants:
        plain, fused = best[variant, "torch's default Adam"], best[variant, "fused Adam"]
        figures[variant] = {"default_ms": plain, "fused_ms": fused, "ratio": fused / plain}
        rows.append([variant, f"{plain:.2f}", f"{fused:.2f}", f"{fused / plain:.2f}"])
    what = f"row {args.row}" if args.row else "grid25 (profiles/repro-grid25.yaml)"
    print(f"\n{what} on {device}, one torch thread, best of {args.rounds} rounds")
    print(table(["variant", "default Adam ms/step", "fused ms/step", "÷ default"], rows))
    figures["steps"], figures["rounds"] = args.steps, args.rounds
    figures["row"], figures["device"] = args.row, str(device)
    fused_ms = {variant: best[variant, "fused Adam"] for variant in grid.variants}
    figures["projected_hours"] = projected_hours(grid, fused_ms)
    cells = len(grid.seeds) * len(grid.variants)
    print(
        f"{cells} cells one after another, training only: ~{figures['projected_hours']:.1f} h "
        f"projected from the fused steps"
    )
    report(args, "mode_steps", machine(), figures)


if __name__ == "__main__":
    main()
