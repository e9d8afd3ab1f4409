"""What every stage's process runs on: progress bars that are live in a terminal and stay
readable in CI logs (a line every 15 s instead of a carriage-return storm), torch's thread pool
sized for the jobs sharing the cores, the entry point, and a fast exit. Torch-free at import, so
that a stage that never computes (prepare, report) starts without it; the device and seeding
are `ugan.core.device`."""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from tqdm.auto import tqdm

from ugan.core.errors import UserError


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


def configure_threads() -> int | None:
    """Size torch's intra-op pool for the jobs sharing this machine: `UGAN_THREADS` if set,
    else `OMP_NUM_THREADS` if set (torch read it already), else the cores this process may use
    divided by `UGAN_JOBS` (default 1). Two trainers each starting with every core's worth of
    threads oversubscribe the cores: a step was measured 7× slower. Returns the thread count,
    or None in a process that has not imported torch (a stage that never computes: importing
    torch only to size its pool would cost that stage ~2 s)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
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
