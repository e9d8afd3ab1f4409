"""Benchmark 4 — scaling: time per GAN step (one D and one G update of the `gan` method) and peak
memory against batch size and image size (28 / 32 / 64 px, the nets' three layouts).

    python benchmarks/scaling.py [--batch-sizes 32 64 128] [--device auto]

Each configuration runs in its own process, so peak memory is that configuration's alone: on
CUDA the allocator's peak (torch.cuda.max_memory_allocated), on the CPU the growth of the
process's peak resident set over its size before the nets were built. The ratio column is the
time per image against the smallest configuration, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
from common import arguments, machine, report, table, timed

IMAGE_SIZES = (28, 32, 64)
DEFAULT_BATCHES = {"cpu": [32, 64, 128], "cuda": [64, 256, 1024]}


def one(image_size: int, batch: int, steps: int, device_name: str, perf: str) -> dict:
    """Time `steps` training steps of one configuration in this process."""
    import numpy as np

    from ugan.config.load import parse_params
    from ugan.config.schema import PerfParams
    from ugan.core.device import resolve_device
    from ugan.data.batches import InfiniteBatches
    from ugan.nets.arch import ArchConfig
    from ugan.training.accel import Accel
    from ugan.training.gan import build_method

    device = resolve_device(device_name)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    arch = ArchConfig(image_size=image_size)
    run = parse_params({"gan": {"batch_size": batch}}).run("dcgan")
    recipe = {"arch": arch.to_dict(), "source": "random", "init_std": 0.02}
    method = build_method(arch, run, recipe, 0.02).to(device)
    images = np.random.default_rng(0).integers(0, 256, (2 * batch, 1, image_size, image_size))
    batches = InfiniteBatches(images.astype(np.uint8), np.zeros(2 * batch), batch, 0, device)
    settings = {"fast": {"precision": "bf16", "channels_last": True}}.get(perf, {})
    accel = Accel.from_params(PerfParams(**settings), device)
    method = accel.prepare(method, batches)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with accel.autocast():
            method.train_step(batches.next)

    with accel.backends():
        for _ in range(3):  # warm-up: allocator, cudnn autotuning
            timed(step, device)
        seconds = timed(lambda: [step() for _ in range(steps)], device) / steps
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
    return {"image_size": image_size, "batch": batch, "s_per_step": seconds, "peak_mib": peak_mib}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--image-sizes", type=int, nargs="+", default=list(IMAGE_SIZES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--perf", choices=("default", "fast"), default="default")
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    from ugan.core.device import resolve_device

    if args.worker:  # one configuration, in a fresh process
        result = one(*args.worker, args.steps, args.device, args.perf)
        print(json.dumps(result))
        return
    device = resolve_device(args.device)
    batches = args.batch_sizes or DEFAULT_BATCHES[device.type]
    results = []
    for size in args.image_sizes:
        for batch in batches:
            command = [sys.executable, __file__, "--worker", str(size), str(batch)]
            command += ["--steps", str(args.steps), "--device", str(device), "--perf", args.perf]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            r = results[-1]
            print(f"  {size}px batch {batch}: {r['s_per_step'] * 1e3:.1f} ms/step", flush=True)
    base = results[0]["s_per_step"] / results[0]["batch"]
    for r in results:
        r["images_per_s"] = r["batch"] / r["s_per_step"]
        r["time_per_image_ratio"] = r["s_per_step"] / r["batch"] / base
    first = results[0]
    print(
        f"\nScaling of one GAN step ({args.perf} perf, {args.steps} timed steps); ratio: time "
        f"per image against {first['image_size']}px, batch {first['batch']}\n"
    )
    print(
        table(
            ["image", "batch", "ms / step", "images / s", "peak MiB", "time/image ×"],
            [
                [
                    f"{r['image_size']}px",
                    r["batch"],
                    f"{r['s_per_step'] * 1e3:.1f}",
                    f"{r['images_per_s']:.0f}",
                    f"{r['peak_mib']:.0f}",
                    f"{r['time_per_image_ratio']:.2f}",
                ]
                for r in results
            ],
        )
    )
    report(args, "scaling", machine(device), {"perf": args.perf, "configurations": results})


if __name__ == "__main__":
    main()
