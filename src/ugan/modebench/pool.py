"""The cells of a mode-coverage benchmark in parallel processes, one torch thread each.

A 2-D cell (MLPs of 128 units on a batch of ~128 points) steps through many small matrix
products, each too small to split: more threads for one cell buy nothing, more cells at once
scale with the cores.
So the cells to train go to a `concurrent.futures.ProcessPoolExecutor` of `workers` processes,
each with `torch.set_num_threads(1)`.

- Start method `spawn`: a fresh interpreter per worker. `fork` would copy a parent whose torch
  (and MLflow) may already run threads, which is unsafe. A spawned worker gets the parent's
  `sys.path` and working directory, so a package run from a copied `src` (PYTHONPATH) is the
  package the workers import, and relative folders (`.ugan/resume`, `.ugan/spool`) are the same.
- What every cell shares (the context, nets, data, inits) goes to each worker once, as the
  pool's initializer argument (the pool pickles it); a task carries only its cell's arguments.
- A worker writes its cell's `result.json` itself, so a cell that finished stays finished
  whatever happens to the others or to the parent.
- The first cell that raises stops the benchmark: the cells not started yet are cancelled, the
  ones running finish (and keep their results, reused by the next execution), then that cell's
  exception is raised here, with the worker's traceback as its cause.
- Ctrl-C reaches the workers too (one process group): a training loop saves its state and stops,
  and a worker that was stopped, or idle when the signal came, starts no further cell (the pool
  hands out cells ahead of time). A SIGTERM to the stage process is passed on to the workers.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from ugan.core.runtime import JOBS_ENV, available_cores

START_METHOD = "spawn"

_shared: dict[str, Any] = {}  # in a worker: what every cell reads, received once


def resolve_workers(setting: int | str, cells: int, device: torch.device | str = "cpu") -> int:
    """Worker processes for `cells` cells to train: `setting` (a number, or `auto` = usable
    cores ÷ UGAN_JOBS, and 1 on a CUDA device, which one process drives), at most `cells`."""
    if setting == "auto":
        if torch.device(device).type == "cuda":
            return 1
        jobs = max(1, int(os.environ.get(JOBS_ENV) or 1))
        setting = max(1, available_cores() // jobs)
    return max(1, min(int(setting), cells))


def finished(label: str, key: str, seconds: float, done: int, total: int) -> None:
    """The progress line of one finished cell."""
    print(f"{label}: {key} finished in {seconds:.1f} s ({done}/{total})", flush=True)


def _stop_requested(signum, frame) -> None:
    """SIGINT / SIGTERM outside a training loop (which installs its own handler): this worker
    starts no further cell."""
    _shared["stopped"] = signal.Signals(signum).name


def _start_worker(shared: Any) -> None:
    torch.set_num_threads(1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_requested)
    _shared["value"] = shared  # the pool sent it once, with the worker's start


def _run(call: Callable, args: tuple) -> tuple[Any, float]:
    # The pool hands a worker its next cells before the parent hears of a stop: without this,
    # a stopped stage would wait for them to train to the end.
    if "stopped" in _shared:
        raise KeyboardInterrupt(f"not started: the stage was stopped ({_shared['stopped']})")
    start = time.perf_counter()
    try:
        result = call(_shared["value"], *args)
    except KeyboardInterrupt:
        _shared["stopped"] = "a cell was interrupted"
        raise
    except Exception as error:
        try:  # the parent must be able to rebuild it, or the whole pool reads as broken
            copy.deepcopy(error)  # the same reduce-and-rebuild as the pool's pickling
        except Exception:
            raise RuntimeError(f"{type(error).__name__}: {error}") from error
        raise
    return result, time.perf_counter() - start


def _pass_sigterm(signum, frame) -> None:
    """SIGTERM to the stage process (a cancelled job): the workers stop too, saving state."""
    for child in multiprocessing.active_children():
        if child.pid is not None:
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    raise KeyboardInterrupt("stopped by signal SIGTERM")


def run_parallel(
    call: Callable[..., Any],
    shared: Any,
    tasks: dict[Hashable, tuple],
    workers: int,
    label: str,
    name: Callable[[Hashable], str] = str,
) -> dict[Hashable, Any]:
    """`call(shared, *tasks[key])` for every key on `workers` processes → {key: result}.
    `call` must be a module-level function (workers import it by name). One progress line per
    finished task; the first task to raise stops the rest (see the module's docstring)."""
    results: dict[Hashable, Any] = {}
    failures: list[tuple[Hashable, BaseException]] = []

    def collect(future: Future, key: Hashable) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            results[key], seconds = future.result()
            finished(label, name(key), seconds, len(results), len(tasks))
        else:
            failures.append((key, error))
            print(f"{label}: {name(key)} failed: {type(error).__name__}: {error}", flush=True)

    context = multiprocessing.get_context(START_METHOD)
    print(f"{label}: {len(tasks)} cells on {workers} processes, 1 torch thread each", flush=True)
    main = threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous = signal.signal(signal.SIGTERM, _pass_sigterm) if main else None
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(shared,)
    )
    try:
        futures = {pool.submit(_run, call, args): key for key, args in tasks.items()}
        order = list(futures)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=order.index):
                collect(future, futures[future])
            if failures:  # stop: the cells not started are cancelled, running ones finish
                for future in pending:
                    future.cancel()
        if failures:
            key, error = failures[0]
            error.add_note(f"while training cell {name(key)} of {label} in a worker process")
            raise error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if main:
            signal.signal(signal.SIGTERM, previous)
    return results
