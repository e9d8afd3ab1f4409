"""Resumable training: full state every K steps, a lock per run, a clean stop on signals.

The resume state lives outside DVC's outputs (`.ugan/resume/<name>/`), because DVC clears a
stage's outputs before it reruns the command. It holds the model and optimizer states, every
RNG (torch, CUDA, numpy, python, the data order) and the step, plus a fingerprint of everything
that must not change across a resume (architecture, loss, optimizer, data and init files).
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ugan.core.checkpoint_io import describe_mismatches, load_checkpoint, save_checkpoint
from ugan.core.errors import CheckpointError, ResumeMismatchError, RunLockedError
from ugan.core.io import writing
from ugan.core.paths import RESUME_ROOT

FRESH_ENV = "UGAN_FRESH_START"
KEEP = 2  # states kept on disk: the newest may be the one a crash truncated


def fresh_start_requested() -> bool:
    return os.environ.get(FRESH_ENV, "").lower() in {"1", "true", "yes"}


# -- RNG state as plain tensors / ints, so that weights_only loading accepts it ------------


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "python": [py_version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", keys, state["numpy_pos"], has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def diff_fingerprints(saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [
        f"{k}: saved {saved.get(k)!r} → now {current.get(k)!r}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


class ResumeStore:
    """Use as a context manager around a training loop; it holds the run's lock."""

    def __init__(self, name: str, fingerprint: dict[str, Any], root: Path = RESUME_ROOT):
        self.dir = Path(root) / name
        self.fingerprint = fingerprint
        self.unusable: list[Path] = []  # states `latest` set aside as unusable
        self._lock_handle = None

    def __enter__(self) -> ResumeStore:
        lock = self.dir / "lock"
        with writing(lock):
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = open(lock, "a")  # "a": truncating it would clear a holder's pid
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunLockedError(
                f"another trainer is using {self.dir} (lock held); wait for it or stop it"
            ) from None
        try:
            with writing(lock):
                handle.truncate(0)
                handle.write(str(os.getpid()))
                handle.flush()
        except Exception:
            handle.close()
            raise
        self._lock_handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _states(self) -> list[Path]:
        return sorted(self.dir.glob("state_*.pt"), reverse=True)

    def latest(self, fits: Callable[[dict], list[str]] | None = None) -> dict | None:
        """The newest usable state, or None. A state that is truncated or corrupt, or that
        `fits(state)` says cannot be loaded into the nets (tensors missing or of other shapes,
        though its fingerprint claims the same params: corrupt too) is moved aside to
        `<name>.unusable` with a warning, and the next newest is tried; `unusable` lists them.

        Raises ResumeMismatchError when it was made with other params, unless a fresh start
        was requested (UGAN_FRESH_START=1), in which case old states are discarded."""
        if fresh_start_requested():
            self.clear()
            return None
        for path in self._states():
            try:
                state = load_checkpoint(path)
            except CheckpointError as exc:
                self._set_aside(path, str(exc))
                continue
            differences = diff_fingerprints(state.get("fingerprint", {}), self.fingerprint)
            if differences:
                raise ResumeMismatchError(
                    f"cannot resume from {path}: params changed since it was saved:\n  "
                    + "\n  ".join(differences)
                    + f"\nRestore them, or start fresh with {FRESH_ENV}=1"
                )
            mismatches = fits(state) if fits is not None else []
            if mismatches:
                self._set_aside(
                    path,
                    f"checkpoint {path} does not fit the nets its params describe "
                    f"({describe_mismatches(mismatches)}): corrupt",
                )
                continue
            return state
        return None

    def _set_aside(self, path: Path, why: str) -> None:
        """Rename an unusable state out of the way: states saved after it must not be pruned
        in its favour (it sorts newer), and it stays for inspection until the run finishes."""
        aside = path.with_name(path.name + ".unusable")
        try:
            path.replace(aside)
            where = f"; moved aside to {aside.name}"
        except OSError:
            where = ""
        self.unusable.append(aside if where else path)
        warnings.warn(f"skipping unusable resume state: {why}{where}", stacklevel=3)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        path = self.dir / f"state_{step:08d}.pt"
        save_checkpoint(path, {**state, "step": step, "fingerprint": self.fingerprint})
        for old in self._states()[KEEP:]:
            old.unlink(missing_ok=True)
        return path

    def clear(self) -> None:
        for path in [*self._states(), *self.dir.glob("state_*.pt.unusable")]:
            path.unlink(missing_ok=True)


class StopRequest:
    """Turn SIGINT / SIGTERM into a flag the loop checks between steps, so a stop never lands
    mid-update: the loop saves a consistent state, then raises KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self) -> StopRequest:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def check(self) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(f"stopped by signal {signal.Signals(self.requested).name}")
