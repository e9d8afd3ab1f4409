"""What every stage runs on: the device, seeding, and progress bars that are live in a terminal
and stay readable in CI logs (a line every 15 s instead of a carriage-return storm)."""

from __future__ import annotations

import atexit
import functools
import os
import random
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import numpy as np
import torch
from tqdm.auto import tqdm

from ugan.core.errors import DeviceError, UserError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else the CPU; `cuda` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was requested but no CUDA GPU is visible")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a dedicated generator for the data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def progress(total: int, desc: str, unit: str = "step"):
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=interactive,
        ncols=None if interactive else 100,
        mininterval=0.2 if interactive else 15.0,
        ascii=not interactive,
        leave=True,
    )


THREADS_ENV = "UGAN_THREADS"  # the user's override: torch threads per stage process
JOBS_ENV = "UGAN_JOBS"  # stage processes sharing the machine (`ugan queue -j`, `grid --jobs`)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (cgroups, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads() -> int:
    """Size torch's intra-op pool for the jobs sharing this machine: `UGAN_THREADS` if set,
    else `OMP_NUM_THREADS` if set (torch read it already), else the cores this process may use
    divided by `UGAN_JOBS` (default 1). Two trainers each starting with every core's worth of
    threads oversubscribe the cores: a step was measured 7× slower. Returns the thread count."""
    explicit = os.environ.get(THREADS_ENV)
    if explicit:
        torch.set_num_threads(max(1, int(explicit)))
    elif not os.environ.get("OMP_NUM_THREADS"):
        jobs = max(1, int(os.environ.get(JOBS_ENV) or 1))
        torch.set_num_threads(max(1, available_cores() // jobs))
    return torch.get_num_threads()


def entry_point(main: Callable[..., object]) -> Callable[[], None]:
    """Wrap a command's main (a DVC stage, the torchrun trainer): `main(*sys.argv[1:])`; a
    `UserError` prints `error: …` and exits 2, Ctrl-C / SIGTERM exit 130, anything else keeps
    its traceback (a bug, or a fault the user cannot fix by editing params). Torch's threads
    are sized first (`configure_threads`)."""

    @functools.wraps(main)
    def run() -> None:
        configure_threads()
        try:
            main(*sys.argv[1:])
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        if _is_the_program(main) and os.environ.get(FAST_EXIT_ENV, "1") != "0":
            exit_now()

    return run


FAST_EXIT_ENV = "UGAN_FAST_EXIT"  # 0: end a finished stage the slow way (e.g. to debug teardown)


def _is_the_program(main: Callable[..., object]) -> bool:
    """Whether `main` is defined in the script Python was started with (`python
    stages/x.py`), so that its return ends the process; never when a test or another
    module calls it."""
    program = getattr(sys.modules.get("__main__"), "__file__", None)
    code = getattr(main, "__code__", None)
    return bool(program and code) and os.path.realpath(program) == os.path.realpath(
        code.co_filename
    )


def exit_now(code: int = 0) -> NoReturn:
    """End a finished program without the interpreter's teardown of every module, which
    costs a stage about a second after its work is done (torch, MLflow, SQLAlchemy: the tiny
    12-stage `dvc repro` took 100.0 s with it, 85.7 s without; `benchmarks/pipeline_overhead.py
    --teardown`). What the teardown would have run that matters still runs, in
    the interpreter's order: other threads finish, then every `atexit` hook (MLflow, logging's
    flush, `weakref.finalize`), then the standard streams are flushed. Files are all written
    and closed by then (atomic writes), so nothing is lost."""
    # No public names for these two: they are what CPython's own exit calls, in this order
    # (the first also stops executors registered with threading's exit hooks, then joins).
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a pipe the reader already left
            pass
    os._exit(code)
