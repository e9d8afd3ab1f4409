"""What benchmarks/gpu_matrix.py asserts beyond losses and checkpoints: the host-sync audit of
each cell, and the two checks of the device against the CPU.

- The sync audit: no host sync in any training step but the log / checkpoint steps (and the
  first WARMUP_STEPS: lazy CUDA init, cudnn autotuning, compilation). Each sync is attributed
  to its step, to the batch draw or the step itself, and to the line that caused it. On CUDA a
  sync is what `torch.cuda.set_sync_debug_mode("warn")` reports (a device→host read, a
  blocking host→device copy, a stream synchronisation: whatever makes the host wait for the
  GPU); on the CPU, where nothing waits, a read of a tensor's value by ugan code (`.item()`,
  `float()`, `.tolist()`…), with losses deferred (`loss_sync: log`, what `auto` is on CUDA).
- `cross_device_check`: gan/ns trained on the device, interrupted after its step-2 state. A
  resume on the CPU is refused: the resume fingerprint holds the device type by design (other
  kernels and random streams: `ugan.training.accel.numeric_identity`), so the check is a
  ResumeMismatchError naming `device: saved 'cuda' → now 'cpu'` and the fresh-start escape,
  never a resume. The same state then resumes on the device and finishes (the refusal was
  about the device, not a broken state), and the generator checkpoint written on the device
  loads on the CPU and gives the device's samples for the same z (exact fp32, no TF32)
  within SAMPLE_ATOL. On a CPU-only run the refusal is not applicable (one device type).
- `fid_check`: the final checkpoint of the gan/ns/default cell and the same held-out images
  scored by `ugan.evaluation.fidelity.FidelityEvaluator` on the CPU and on the device (features
  of an untrained classifier with the data's BatchNorm statistics; torch's default TF32 for
  convolutions, as the evaluate stage runs): FID within FID_TOLERANCE (relative) for the same
  generated images and for images generated on each device. On a CPU-only run both sides are
  the CPU (the plumbing only).

Each check returns one row of the matrix: check, method, loss, preset, ok, seconds, error, and
what was measured.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from gpu_runs import (
    NullTracker,
    env_without,
    finish_row,
    perf_of,
    random_recipe,
    resolved_run,
)
from torch import nn

from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import ResumeMismatchError
from ugan.core.paths import RunLayout
from ugan.data.pixels import to_float, to_uint8
from ugan.data.prepared import PreparedData
from ugan.evaluation.fidelity import FidelityEvaluator
from ugan.nets.arch import ArchConfig
from ugan.nets.classifier import Classifier
from ugan.nets.generator_file import load_generator, noise, sample
from ugan.training.accel import Accel
from ugan.training.gan import train_gan
from ugan.training.resume import FRESH_ENV

WARMUP_STEPS = 2  # not audited: lazy CUDA init, cudnn autotuning, compilation
SYNC_WARNING = "synchronizing CUDA operation"  # torch's sync-debug message
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
FID_TOLERANCE = 0.01  # relative
SAMPLE_ATOL = 1e-3  # generator outputs in [-1, 1], exact fp32 on both devices


# -- the sync audit ----------------------------------------------------------------------------


class SyncAudit:
    """Host syncs during training, each as (step, phase, where): `step` the loop step in
    progress (0: set-up), `phase` "batch" while the step draws a batch, else "step" (the
    method's update and the loop's bookkeeping after it), `where` the line that synced.

    CUDA: torch's sync debug mode ("warn"), every warning recorded; CPU: reads of a tensor's
    value called from ugan code."""

    def __init__(self, device: torch.device | str):
        self.cuda = torch.device(device).type == "cuda"
        self.step, self.phase = 0, "step"
        self.events: list[tuple[int, str, str]] = []
        self._records: list[warnings.WarningMessage] = []
        self._seen = 0
        self._other: list[warnings.WarningMessage] = []

    def at(self, step: int, phase: str) -> None:
        self._collect()
        self.step, self.phase = step, phase

    def _collect(self) -> None:
        for record in self._records[self._seen :]:
            if SYNC_WARNING in str(record.message):
                self.events.append((self.step, self.phase, _short(record.filename, record.lineno)))
            else:
                self._other.append(record)
        self._seen = len(self._records)

    @contextlib.contextmanager
    def watching(self) -> Iterator[SyncAudit]:
        if self.cuda:
            previous = torch.cuda.get_sync_debug_mode()
            with warnings.catch_warnings(record=True) as self._records:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    yield self
                finally:
                    torch.cuda.set_sync_debug_mode(previous)
                    self._collect()
            for record in self._other:  # not ours to swallow
                warnings.warn_explicit(
                    record.message, record.category, record.filename, record.lineno
                )
        else:
            with self._host_reads():
                yield self

    @contextlib.contextmanager
    def _host_reads(self) -> Iterator[None]:
        real = {name: getattr(torch.Tensor, name) for name in HOST_READS}

        def counting(name: str):
            def read(tensor, *args, **kwargs):
                caller = sys._getframe(1)
                if caller.f_globals.get("__name__", "").startswith("ugan."):
                    where = _short(caller.f_code.co_filename, caller.f_lineno)
                    self.events.append((self.step, self.phase, f"{where} ({name})"))
                return real[name](tensor, *args, **kwargs)

            return read

        for name in HOST_READS:
            setattr(torch.Tensor, name, counting(name))
        try:
            yield
        finally:
            for name, method in real.items():
                setattr(torch.Tensor, name, method)

    def outside(self, allowed: set[int]) -> list[tuple[int, str, str]]:
        """The syncs of audited steps (after the warm-up) that are not in `allowed`."""
        return [e for e in self.events if e[0] > WARMUP_STEPS and e[0] not in allowed]


def _short(filename: str, lineno: int) -> str:
    path = Path(filename)
    parts = path.parts
    for anchor in ("ugan", "torch", "benchmarks"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{Path(*parts[index:])}:{lineno}"
    return f"{path.name}:{lineno}"


class Audited:
    """train_gan's `wrap`: the prepared method, its steps numbered and its batch draws told
    apart for the audit. Everything else is the method's."""

    def __init__(self, method, audit: SyncAudit) -> None:
        self.method, self.audit, self.calls = method, audit, 0

    def __getattr__(self, name: str):
        return getattr(self.__dict__["method"], name)

    def train_step(self, next_batch):
        self.calls += 1
        step = self.calls
        self.audit.at(step, "step")

        def draw():
            self.audit.at(step, "batch")
            try:
                return next_batch()
            finally:
                self.audit.at(step, "step")

        return self.method.train_step(draw)


# -- a checkpoint across devices -------------------------------------------------------------


class _Interrupted(KeyboardInterrupt):
    """What the cross-device check interrupts a run with (as Ctrl-C would)."""


class _StopAtCall:
    """train_gan's `wrap`: the method, interrupted at train_step call `at` (0: never);
    `calls` counts the steps it trained."""

    def __init__(self, at: int = 0) -> None:
        self.at, self.calls = at, 0

    def __call__(self, method, batches):
        self.method = method
        return self

    def __getattr__(self, name: str):
        return getattr(self.__dict__["method"], name)

    def train_step(self, next_batch):
        self.calls += 1
        if self.calls == self.at:
            raise _Interrupted
        return self.method.train_step(next_batch)


def cross_device_check(
    device: torch.device,
    data: PreparedData,
    arch: ArchConfig,
    workdir: Path,
    *,
    batch_size: int,
) -> dict:
    """A run written on `device` against the CPU: resume refused, checkpoint loads and agrees
    (see the module docstring)."""
    row = {"check": "cross-device", "method": "gan", "loss": "ns", "preset": "default"}
    started = time.perf_counter()
    problems: list[str] = []
    cpu = torch.device("cpu")
    layout = RunLayout(workdir / "cross-device")
    run = resolved_run("gan", "ns", 4, batch_size)  # states and checkpoints at steps 2 and 4

    def train(where: torch.device, wrap: _StopAtCall) -> dict:
        return train_gan(
            "cross-device", run, arch, data, random_recipe(arch), layout.root, NullTracker(),
            device=where, resume_root=workdir / "resume", perf=perf_of("default", where),
            wrap=wrap,
        )  # fmt: skip

    try:
        with env_without(FRESH_ENV):
            try:
                train(device, _StopAtCall(at=3))
                problems.append("the interrupted run did not stop")
            except _Interrupted:
                pass
            if device.type != "cpu":
                try:
                    train(cpu, _StopAtCall())
                    problems.append(f"a resume state written on {device.type} resumed on the cpu")
                except ResumeMismatchError as error:
                    text = str(error)
                    named = f"device: saved '{device.type}' → now 'cpu'"
                    if named not in text or f"{FRESH_ENV}=1" not in text:
                        problems.append(f"the refusal does not name {named!r}: {text}")
                    row["refused"] = named
            resumed = _StopAtCall()
            summary = train(device, resumed)
        if resumed.calls != 2:
            problems.append(f"the resume trained {resumed.calls} steps, not steps 3-4")
        if summary["checkpoints"] != [2, 4]:
            problems.append(f"checkpoints {summary['checkpoints']}, expected [2, 4]")
        path = layout.checkpoint_path(4)
        z = noise(64, arch.latent_dim, "normal", seed=0)
        outputs = {}
        for where in dict.fromkeys([device, cpu]):
            generator = load_generator(path, where)
            if {p.device.type for p in generator.parameters()} != {where.type}:
                problems.append(f"the generator loaded for {where} has weights elsewhere")
            with Accel(where).backends():  # exact fp32: no TF32 on either side
                outputs[where] = sample(generator, z.to(where)).cpu()
        difference = (outputs[device] - outputs[cpu]).abs().max().item()
        row["max_sample_difference"] = difference
        if not difference <= SAMPLE_ATOL:
            problems.append(
                f"samples of the {device.type} checkpoint differ on cpu by {difference:.2e} "
                f"(> {SAMPLE_ATOL})"
            )
    except Exception as error:
        problems.append(f"{type(error).__name__}: {error}")
    return finish_row(row, problems, started)


# -- FID on two devices ------------------------------------------------------------------------


def make_classifier(path: Path, images: np.ndarray, seed: int = 0) -> Path:
    """A feature network for FID without training: a random classifier whose BatchNorm
    statistics are those of `images` (its features then have a useful spread)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(channels=images.shape[1])
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # cumulative: one pass gives the images' statistics
        model.train()
        with torch.no_grad():
            model(to_float(images[:256]))
    save_checkpoint(path, model.eval().to_payload())
    return path


def generated(checkpoint: Path, where: torch.device, count: int) -> torch.Tensor:
    """uint8 images of the checkpoint's generator on `where`, as the evaluate stage makes them."""
    generator = load_generator(checkpoint, where)
    z = noise(count, generator.cfg.latent_dim, generator.prior, seed=0, device=where)
    return to_uint8(sample(generator, z)).cpu()


def fid_check(
    device: torch.device, data: PreparedData, checkpoint: Path | None, workdir: Path, count: int
) -> dict:
    """FID of one checkpoint against the held-out images, scored on the CPU and on `device`."""
    row = {"check": f"fid cpu vs {device.type}", "method": "gan", "loss": "ns", "preset": "default"}
    started = time.perf_counter()
    problems: list[str] = []
    cpu = torch.device("cpu")
    try:
        if checkpoint is None or not checkpoint.is_file():
            raise FileNotFoundError("no checkpoint of the gan/ns/default cell to score")
        heldout = torch.as_tensor(data.heldout[0])
        weights = make_classifier(workdir / "classifier.pt", data.train[0])
        kid = min(100, count, len(heldout))
        scorer = {
            where: FidelityEvaluator(
                weights, heldout, device=str(where), kid_subset_size=kid, seed=0
            )
            for where in dict.fromkeys([cpu, device])
        }
        images = {where: generated(checkpoint, where, count) for where in scorer}
        fid = {
            "cpu": scorer[cpu](images[cpu])["fid"],
            "same_images": scorer[device](images[cpu])["fid"],
            "end_to_end": scorer[device](images[device])["fid"],
        }
        row["fid"] = fid
        for key in ("same_images", "end_to_end"):
            value = fid[key]
            relative = abs(value - fid["cpu"]) / abs(fid["cpu"])
            row[f"fid_relative_{key}"] = relative
            if not (math.isfinite(value) and relative <= FID_TOLERANCE):
                problems.append(
                    f"FID on {device.type} ({key.replace('_', ' ')}) {value:.4f} vs cpu "
                    f"{fid['cpu']:.4f}: {relative:.2%} apart (> {FID_TOLERANCE:.0%})"
                )
        if not (math.isfinite(fid["cpu"]) and fid["cpu"] > 0):
            problems.append(f"FID on cpu is {fid['cpu']}")
    except Exception as error:
        problems.append(f"{type(error).__name__}: {error}")
    return finish_row(row, problems, started)
