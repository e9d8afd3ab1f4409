"""Benchmark — OpenMP's wait policy: GAN steps/s of the default DCGAN (28 px, batch 64, torch on
every core) with idle OpenMP threads spinning (libgomp's default, the reference) against
sleeping at once (`OMP_WAIT_POLICY=PASSIVE`), each alone and two trainers at once that were not
told of each other (two users' jobs, a run beside a test; `ugan queue -j N` splits the threads
instead). Every figure is a fresh process; the ratios are against the spinning reference
measured in the same run. It decides the default: README "Performance", Threads.

    python benchmarks/omp_wait.py [--steps 60]
"""

from __future__ import annotations

import os
import subprocess
import sys

from common import ROOT, arguments, machine, report, table

# One trainer: the default run's GAN step, timed after a warm-up; prints steps/s.
TRAINER = """
import time, torch
from ugan.config.load import parse_params
from ugan.nets.arch import ArchConfig
from ugan.training.gan import build_method
arch = ArchConfig(image_size=28, channels=1, latent_dim=128, base_channels=64)
raw = {{"gan": {{"steps": 10, "checkpoint_every": 10}}, "runs": {{"r": {{"init": "random"}}}}}}
method = build_method(arch, parse_params(raw).run("r"),
                      {{"arch": arch.to_dict(), "net": "dcgan", "prior": "normal",
                        "source": "random"}}, 0.02)
batch = (torch.rand(64, 1, 28, 28) * 2 - 1, torch.zeros(64, dtype=torch.long))
for _ in range(5):
    method.train_step(lambda: batch)
start = time.perf_counter()
for _ in range({steps}):
    method.train_step(lambda: batch)
print({steps} / (time.perf_counter() - start))
"""


def steps_per_second(policy: str | None, together: int, steps: int) -> float:
    """Mean steps/s of `together` trainers started at once with OpenMP wait policy `policy`
    (None: libgomp's default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env |= {"OMP_WAIT_POLICY": policy} if policy else {}
    env["PYTHONPATH"] = str(ROOT / "src")
    code = TRAINER.format(steps=steps)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(together)
    ]
    rates = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit(f"a trainer failed (exit {proc.returncode})")
        rates.append(float(out.strip().splitlines()[-1]))
    return sum(rates) / len(rates)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    ways = {
        "alone, spinning (libgomp default)": (None, 1),
        "alone, PASSIVE": ("PASSIVE", 1),
        "2 at once, spinning": (None, 2),
        "2 at once, PASSIVE": ("PASSIVE", 2),
    }
    figures = {}
    for label, (policy, together) in ways.items():
        rate = steps_per_second(policy, together, args.steps)
        figures[label] = {"policy": policy or "default", "trainers": together, "steps_per_s": rate}
        print(f"{label}: {rate:.2f} steps/s per trainer", flush=True)
    alone = figures["alone, spinning (libgomp default)"]["steps_per_s"]
    shared = figures["2 at once, spinning"]["steps_per_s"]
    for figure in figures.values():
        figure["ratio_to_alone_spinning"] = figure["steps_per_s"] / alone
        reference = alone if figure["trainers"] == 1 else shared
        figure["ratio_to_spinning"] = figure["steps_per_s"] / reference
    rows = [
        [label, f"{f['steps_per_s']:.2f}", f"{f['ratio_to_spinning']:.2f}",
         f"{f['ratio_to_alone_spinning']:.2f}"]
        for label, f in figures.items()
    ]  # fmt: skip
    print(f"\nDCGAN step, 28 px, batch 64, torch on every core, {args.steps} steps per trainer")
    print(table(["way", "steps/s per trainer", "÷ spinning", "÷ alone spinning"], rows))
    report(args, "omp_wait", machine(), figures)


if __name__ == "__main__":
    main()
