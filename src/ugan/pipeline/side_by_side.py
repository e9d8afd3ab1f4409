"""`ugan run`'s runs side by side. One small GAN does not fill even 2 CPU cores: two trainings
with one thread each at once took 55 s where the same two, one after the other on two threads
each, took 76 s (`benchmarks/queue_jobs.py`, 250 steps). So `ugan run` reproduces the pipeline
in three `dvc repro`s, and DVC still decides what runs and caches all of it:

1. the shared stages (`dvc_plan.shared_stages`: data, classifier, VAE, inits), every core;
2. each run's cell (`train_gan@<run> evaluate@<run>`, `--single-item`: the shared stages are
   done), up to `jobs` at once, torch's threads sized for the cells running (`UGAN_JOBS`, then
   the live count in `UGAN_JOBS_FILE`: the last of three runs on 2 cores gets both once the
   second ends); every line a cell prints is prefixed with its run;
3. the whole pipeline, which finds the cells done and runs what joins them (modes, report).

`ugan reproduce` runs steps 1 and 2 (`cells_first`) for a profile's runs, and its step 3 is
`dvc exp run`, which records the experiment.

DVC keeps step 2 safe: a stage's command runs with the repository unlocked and its own files
read- or write-locked (DVC's rwlock), and `dvc --wait-for-lock` waits for the short repository
lock a stage takes to start and to record itself instead of failing on it. As `make -j` does, a
failed cell starts no further cells, the running ones finish (their work is cached) and step 3
is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ugan.core.errors import UserError
from ugan.core.io import atomic_write_text
from ugan.core.runtime import JOBS_ENV, JOBS_FILE_ENV, available_cores
from ugan.pipeline import processes
from ugan.pipeline.dvc_plan import cell_stages, shared_stages

POLL_SECONDS = 0.2
# A CUDA device is shared, not split like cores: on a machine that shows one, runs go one after
# another unless `--jobs` says otherwise. (Asking torch would cost this torch-free command ~2 s.)
NVIDIA_DEVICE = Path("/dev/nvidiactl")


def default_jobs(device: str, runs: int) -> int:
    """Cells at once when `--jobs` is not given: one per run, at most one per core, on a CPU."""
    on_gpu = {"cpu": False, "cuda": True, "auto": NVIDIA_DEVICE.exists()}[device]
    return 1 if on_gpu else max(1, min(runs, available_cores()))


def jobs_count(text: str) -> int:
    """argparse type of a --jobs value: a whole number, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of jobs, 1 or more, not {text!r}")
    return int(text)


def reproduce(run_keys: list[str], jobs: int, env: dict[str, str]) -> int:
    """The whole pipeline, its runs' cells `jobs` at once; `dvc repro`'s exit status."""
    code = cells_first(run_keys, jobs, env)
    if code == 0:
        code = processes.call(["dvc", "repro"], env=env)
    return code


def cells_first(run_keys: list[str], jobs: int, env: dict[str, str]) -> int:
    """Steps 1 and 2: the shared stages, then the runs' cells `jobs` at once; the first failed
    `dvc repro`'s exit status, or 0 (step 3 is the caller's: `dvc repro` or `dvc exp run`).
    Nothing for one job or one run: step 3 alone runs everything in DVC's order."""
    if jobs <= 1 or len(run_keys) <= 1:
        return 0
    threads = max(1, available_cores() // jobs)
    print(
        f"runs side by side: {', '.join(run_keys)} ({jobs} at once, {threads} torch thread(s) "
        "each, the cores of a run that ends going to those left; --jobs 1: one after another)",
        flush=True,
    )
    from dvc.exceptions import DvcException

    try:
        shared = shared_stages(".")
    except DvcException as error:  # not a DVC project, a broken dvc.yaml: DVC's own words
        raise UserError(f"dvc: {error}") from None
    code = processes.call(["dvc", "repro", *shared], env=env) if shared else 0
    if code == 0:
        code = run_cells(run_keys, jobs, env | {JOBS_ENV: str(jobs)})
    return code


def run_cells(run_keys: list[str], jobs: int, env: dict[str, str], live: bool = True) -> int:
    """`dvc --wait-for-lock repro` of each run's cell, at most `jobs` at once; the first failed
    cell's exit status, or 0. With `live`, a jobs file (`UGAN_JOBS_FILE`) tells the cells how
    many run now, so that when one ends and none is left to start, the others take its cores
    (`ugan.core.runtime.ThreadsFollower`); without, each keeps `cores / jobs` threads."""
    pending, running, failed = list(run_keys), {}, 0
    with live_jobs() if live else contextlib.nullcontext() as counter:
        env = env | (counter.env if counter else {})
        try:
            while pending or running:
                for key, cell in list(running.items()):
                    code = cell.child.poll()
                    if code is None:
                        continue
                    cell.finish(code)
                    del running[key]
                    if code and not failed:
                        failed = code
                        if pending:
                            print(f"not started after that failure: {', '.join(pending)}")
                        pending.clear()
                # Started before the count is written: a cell that replaces a finished one
                # leaves the count as it was, and its siblings' threads with it.
                while pending and len(running) < jobs and not failed:
                    key = pending.pop(0)
                    running[key] = _Cell(key, env)
                if counter and running:
                    counter.set(len(running))
                time.sleep(POLL_SECONDS)
        except BaseException:  # Ctrl-C, SIGTERM (`ugan` turns it into KeyboardInterrupt)
            stop_all([cell.child for cell in running.values()])
            raise
    return failed


class LiveJobs:
    """The file telling stage processes how many of them share the cores now: its path goes to
    them in `UGAN_JOBS_FILE` (`env`); `set` rewrites it atomically (a stage never reads half a
    number), and only when the count changed."""

    def __init__(self, path: Path) -> None:
        self.path, self.count = path, None
        self.env = {JOBS_FILE_ENV: str(path)}

    def set(self, count: int) -> None:
        if count != self.count:
            atomic_write_text(self.path, str(count))
            self.count = count


@contextlib.contextmanager
def live_jobs() -> Iterator[LiveJobs]:
    """A fresh jobs file for the block (`LiveJobs`), removed afterwards: a stage still running
    then falls back to `UGAN_JOBS`."""
    descriptor, name = tempfile.mkstemp(prefix="ugan-jobs-", suffix=".txt")
    os.close(descriptor)
    try:
        yield LiveJobs(Path(name))
    finally:
        Path(name).unlink(missing_ok=True)


def stop_all(children: list[subprocess.Popen]) -> None:
    """Every cell's process group stopped at once: SIGTERM to all, then each gets the grace a
    stage needs to save its state (one after another, N cells would take N graces)."""
    stoppers = [threading.Thread(target=processes.stop_group, args=(c,)) for c in children]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


class _Cell:
    """One run's `dvc repro` in its own process group, its output relayed line by line."""

    def __init__(self, key: str, env: dict[str, str]) -> None:
        self.key, self.started = key, time.perf_counter()
        self.child = subprocess.Popen(
            # --single-item: a cell checks only its own stages; checking the shared ones too,
            # as a plain `dvc repro` does, write-locks their outputs: the other cells collide.
            ["dvc", "--wait-for-lock", "repro", "--single-item", *cell_stages(key)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.relay = threading.Thread(target=relay, args=(self.child.stdout, f"[{key}] "))
        self.relay.start()
        print(f"[{key}] started: dvc repro {' '.join(self.child.args[3:])}", flush=True)

    def finish(self, code: int) -> None:
        self.relay.join()
        seconds = time.perf_counter() - self.started
        outcome = "done" if code == 0 else f"FAILED (exit {code})"
        print(f"[{self.key}] {outcome} in {seconds:.0f} s", flush=True)


_PRINT = threading.Lock()


def relay(stream: BinaryIO, prefix: str) -> None:
    """Copy a child's output to ours, a line at a time with `prefix`, until it closes. A
    progress bar's carriage-return updates become lines too (a cell's bars are not a terminal's,
    so they update every 15 s: `ugan.core.runtime.progress`)."""
    pending = b""
    while chunk := os.read(stream.fileno(), 65536):
        *lines, pending = (pending + chunk).replace(b"\r", b"\n").split(b"\n")
        _print(prefix, lines)
    _print(prefix, [pending])
    stream.close()


def _print(prefix: str, lines: list[bytes]) -> None:
    text = "".join(
        f"{prefix}{line.decode(errors='replace').rstrip()}\n" for line in lines if line.strip()
    )
    if text:
        with _PRINT:
            sys.stdout.write(text)
            sys.stdout.flush()
