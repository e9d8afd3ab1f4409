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
import time
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
# A file holding how many stage processes share the machine *now*, kept by a scheduler that
# knows it (the runs' cells of `ugan run`, `ugan reproduce` and the Prefect flow): when a
# sibling ends, the processes still running take its cores instead of leaving them idle.
JOBS_FILE_ENV = "UGAN_JOBS_FILE"
RESIZE_SECONDS = 2.0  # how often a running stage looks at the jobs file


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (cgroups, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def jobs_now() -> int:
    """The stage processes sharing the cores now: the count in `UGAN_JOBS_FILE` while its
    scheduler keeps it, else `UGAN_JOBS`, else 1."""
    path = os.environ.get(JOBS_FILE_ENV)
    if path:
        try:
            with open(path) as file:
                return max(1, int(file.read()))
        except (OSError, ValueError):  # the scheduler has ended and removed it
            pass
    return max(1, int(os.environ.get(JOBS_ENV) or 1))


def _threads_fixed() -> bool:
    """Whether the user fixed the thread count (`UGAN_THREADS`, or `OMP_NUM_THREADS`, which
    torch read at import): then ugan never sizes the pool."""
    return bool(os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS"))


def configure_threads() -> int | None:
    """Size torch's intra-op pool for the jobs sharing this machine: `UGAN_THREADS` if set,
    else `OMP_NUM_THREADS` if set (torch read it already), else the cores this process may use
    divided by the jobs sharing them (`jobs_now`). Two trainers each starting with every core's
    worth of threads oversubscribe the cores: a step was measured 7× slower. Returns the thread
    count, or None in a process that has not imported torch (a stage that never computes:
    importing torch only to size its pool would cost that stage ~2 s)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    explicit = os.environ.get(THREADS_ENV)
    if explicit:
        torch.set_num_threads(max(1, int(explicit)))
    elif not _threads_fixed():
        torch.set_num_threads(_threads_for(jobs_now()))
    return torch.get_num_threads()


def _threads_for(jobs: int) -> int:
    """Torch threads of one of `jobs` stage processes sharing the cores."""
    return max(1, available_cores() // jobs)


class ThreadsFollower:
    """Called between units of work (training steps, evaluated checkpoints): re-sizes torch's
    pool when the number of stage processes sharing the cores has changed, looking at the jobs
    file at most every `every` seconds. Without a jobs file, or with the threads fixed by the
    user, it does nothing. (The pool is fixed by `configure_threads` at the start: without this
    the last of three runs on 2 cores trained on one thread while the other core idled.)"""

    def __init__(self, every: float | None = None) -> None:
        self.every = RESIZE_SECONDS if every is None else every
        self.live = bool(os.environ.get(JOBS_FILE_ENV)) and not _threads_fixed()
        self.next_look = time.monotonic() + self.every

    def __call__(self) -> None:
        if not self.live or time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + self.every
        torch = sys.modules.get("torch")
        if torch is None:
            return
        jobs = jobs_now()
        wanted, now = _threads_for(jobs), torch.get_num_threads()
        if wanted != now:
            torch.set_num_threads(wanted)
            tqdm.write(
                f"torch threads {now} → {wanted} ({jobs} stage process(es) on "
                f"{available_cores()} cores)",
                file=sys.stderr,
            )


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
