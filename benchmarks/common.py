"""What every benchmark shares: the machine description, the data, timers, tables and the JSON
record (`--json PATH`) that docs/performance.md is written from."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def machine(device: torch.device | str = "cpu") -> dict:
    """Where the figures were measured: CPU model and cores, GPU, library versions, load."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    return (
        f"{info['cpu']} ({info['cpu_cores']} cores, load {info['load_average_1min']}){gpu}; "
        f"torch {info['torch']}, python {info['python']}; device {info['device']}"
    )


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Seconds `fn()` takes, the device's queued work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeat: int, device="cpu") -> float:
    return statistics.median(timed(fn, device) for _ in range(repeat))


def table(headers: list[str], rows: Iterable[Iterable]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--json",
        type=lambda path: Path(path).resolve(),  # before any benchmark changes directory
        help="also write the figures to this JSON file",
    )
    return parser


def report(args: argparse.Namespace, name: str, info: dict, figures: dict) -> None:
    """Print the machine line; write {benchmark, machine, figures, command} to --json."""
    print(f"\nmachine: {describe(info)}")
    if args.json:
        record = {
            "benchmark": name,
            "command": " ".join(["python", *sys.argv]),
            "machine": info,
            "figures": figures,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"figures written to {args.json}")


def mnist(image_size: int = 28):
    """The embedded MNIST-5k as the pipeline prepares it (no download)."""
    from ugan.data.sources import prepare

    return prepare("mnist5k", image_size, heldout_fraction=0.2, seed=0)
