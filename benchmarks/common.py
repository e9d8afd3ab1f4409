"""What every benchmark shares: the machine description, the data, timers, tables and the JSON
record (`--json PATH`) that docs/performance.md is written from."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import yaml

from ugan.core.runtime import JOBS_ENV, THREADS_ENV
from ugan.tracking.pipeline_run import PARENT_ENV, PIPELINE_ENV

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


# Who commits in a benchmark's throwaway git repository.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def merge(base: dict, override: dict) -> dict:
    """`base` with `override` laid over it, nested dicts merged key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 1800) -> tuple[str, float]:
    """Run `cmd`; its output and seconds, or RuntimeError with the output's tail (a command
    hung past `timeout` raises TimeoutExpired instead of holding the benchmark forever)."""
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr, seconds


def copy_pipeline(path: Path, params: dict) -> None:
    """A tiny project at `path`: the pipeline's code, dvc.yaml, .gitignore and the sources, with
    params.yaml = `params` (the caller sets up git, DVC and the environment it needs)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("src", "stages", "data/sources"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# What a benchmark's project must not inherit from the shell that started it: a pipeline
# run's ids (its stages would nest under that run) and thread sizing (the benchmark sets its own).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV, JOBS_ENV)
INHERITED_RUN = (PIPELINE_ENV, PARENT_ENV, "DVC_ROOT")


def init_project(path: Path, params: dict, *, own_store: bool = True) -> dict:
    """`copy_pipeline(path, params)` made a git + DVC project: the environment its commands run
    in (this interpreter first on PATH, the copy's src importable, no inherited run ids or thread
    sizes; with `own_store`, an MLflow sqlite store inside the project, else ugan's default)."""
    copy_pipeline(path, params)
    drop = {*INHERITED_RUN, *THREAD_VARIABLES, "MLFLOW_TRACKING_URI"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env |= GIT_IDENTITY | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(path / "src"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    if own_store:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{path / 'mlflow.db'}"
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        sh(cmd, path, env)
    return env


def commit_all(path: Path, env: dict, message: str) -> None:
    sh(["git", "add", "-A"], path, env)
    sh(["git", "commit", "-qm", message], path, env)


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())
