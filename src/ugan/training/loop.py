"""The one training loop: GAN runs (`ugan.training.gan`), the VAE (`ugan.training.vae`) and
RFGAN's DAE (`ugan.training.dae`) all run through `run_loop`.

The loop owns what every training shares: seeded batches, the step count, window-averaged losses
to MLflow (`log_every`), a resume state every `save_every` steps and on SIGTERM / Ctrl-C, resume
from the newest state, and a guard against non-finite losses (stop naming the step, or roll back
to the last state and retry with other noise). What one step computes and what a log / save step
writes besides belongs to a `Task`:

    batches.next() → task.train_step → losses → [log step] → [save step: task.on_save, state]

A step's losses may stay on the device until the next log / save step (`Accel.defer_sync`): the
guard then fires there at the latest, always before a state is saved.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ugan.core.checkpoint_io import state_mismatches
from ugan.core.errors import NonFiniteLossError
from ugan.core.runtime import ThreadsFollower, progress
from ugan.data.batches import InfiniteBatches
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import Accel, LossBuffer
from ugan.training.resume import ResumeStore, StopRequest, capture_rng, restore_rng

Batch = tuple[torch.Tensor, torch.Tensor]
Losses = Mapping[str, torch.Tensor | float]


@dataclass(frozen=True)
class Schedule:
    """The loop's cadences. A rollback after a non-finite loss reseeds torch with
    `seed + 7919 · attempt`: the same state with other noise (a replay would hit the same NaN)."""

    steps: int
    log_every: int
    save_every: int
    nonfinite_retries: int = 0
    seed: int = 0


class Task(ABC):
    """What the loop trains. `train_step` draws its batch through `next_batch` and updates the
    model(s); `state_dict` / `load_state_dict` are the task's part of a resume state (the loop
    adds the batches, the RNGs and the MLflow run id). The hooks default to nothing."""

    name: str  # the progress bar's text, and the subject of the non-finite error
    metric_prefix: str = ""  # losses are logged to MLflow as `<metric_prefix><key>`

    @abstractmethod
    def train_step(self, next_batch: Callable[[], Batch]) -> Losses: ...

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def on_start(self, step: int) -> None:  # noqa: B027 (an optional hook)
        """Before the first step, fresh (0) or resumed: discard outputs written after `step`."""

    def before_step(self, done: int) -> None:  # noqa: B027 (an optional hook)
        """Before each step, with the number of steps done so far (a schedule's clock; it
        goes back on a resume or a roll-back)."""

    def on_record(self, step: int, losses: dict[str, float]) -> None:  # noqa: B027 (an optional hook)
        """Each step's (finite) losses, in step order."""

    def postfix(self, averages: dict[str, float], losses: dict[str, float]) -> dict[str, str]:
        """The progress bar's postfix at a log step (window averages, that step's losses)."""
        return {}

    def on_save(self, step: int) -> None:  # noqa: B027 (an optional hook)
        """At a save step, before the resume state is written: checkpoints, sample grids."""


class _Loop:
    def __init__(self, task, batches, store, tracker, schedule, label, accel) -> None:
        self.task, self.batches, self.store, self.tracker = task, batches, store, tracker
        self.schedule, self.label, self.accel = schedule, label, accel
        self.step = 0
        self.retries_left = schedule.nonfinite_retries
        self.window: dict[str, list[float]] = {}  # key → [sum, count] since the last log step
        self.pending = LossBuffer()
        self.follow_jobs = ThreadsFollower()  # a sibling run ended: take its cores

    def run(self) -> None:
        backends = self.accel.backends() if self.accel else contextlib.nullcontext()
        with self.store, StopRequest() as stop, backends:
            self._resume()
            with progress(self.schedule.steps, self.task.name) as self.bar:
                self.bar.update(self.step)
                while self.step < self.schedule.steps:
                    self._stop_if_requested(stop)
                    self._step()

    def _step(self) -> None:
        s = self.schedule
        self.follow_jobs()
        self.task.before_step(self.step)
        with self.accel.autocast() if self.accel else contextlib.nullcontext():
            losses = self.task.train_step(self.batches.next)
        self.step += 1
        self.pending.add(self.step, losses)
        self.bar.update(1)
        save = self.step % s.save_every == 0 or self.step == s.steps
        deferred = self.accel is not None and self.accel.defer_sync
        if deferred and not (save or self.step % s.log_every == 0):
            return
        nonfinite = self._record(self.pending.flush())
        if nonfinite is not None:
            self._roll_back(*nonfinite)
        elif save:
            self.task.on_save(self.step)
            self.store.save(self.step, self._snapshot())

    def _fits(self, state: dict) -> list[str]:
        """Where a saved state cannot be loaded into the task's nets (nothing is loaded)."""
        return state_mismatches(state, self.task.state_dict())

    def _resume(self) -> None:
        state = self.store.latest(self._fits)
        if state is None and self.store.unusable:
            names = ", ".join(str(path) for path in self.store.unusable)
            warnings.warn(
                f"no usable resume state for {self.label} ({names}: see above); "
                "starting over from step 0",
                stacklevel=1,
            )
        self.step = state["step"] if state else 0
        self.task.on_start(self.step)
        if state:
            self._restore(state)
            self.tracker.mark_interrupted(state.get("mlflow_run_id"))
            self.tracker.set_tags({"ugan.resumed_from_step": self.step})
            print(f"resuming {self.label} from step {self.step}", file=sys.stderr)

    def _snapshot(self) -> dict:
        return {
            **self.task.state_dict(),
            "batches": self.batches.state_dict(),
            "rng": capture_rng(),
            "mlflow_run_id": self.tracker.run_id or "",
        }

    def _restore(self, state: dict) -> None:
        self.task.load_state_dict(state)
        self.batches.load_state_dict(state["batches"])
        restore_rng(state["rng"])

    def _stop_if_requested(self, stop: StopRequest) -> None:
        try:
            stop.check()
        except KeyboardInterrupt:
            if self._record(self.pending.flush()) is None:  # never save a state past a NaN
                self.store.save(self.step, self._snapshot())
                print(f"stopped at step {self.step}; state saved for resume", file=sys.stderr)
            raise

    def _record(self, flushed: list[tuple[int, dict[str, float]]]) -> tuple[int, dict] | None:
        """Hand flushed steps to the task and log the window averages at each log step; stop at
        the first non-finite step and return (its step, its bad values)."""
        s = self.schedule
        for at, losses in flushed:
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                return at, bad
            self.task.on_record(at, losses)
            for key, value in losses.items():
                total = self.window.setdefault(key, [0.0, 0])
                total[0] += value
                total[1] += 1
            if at % s.log_every == 0 or at == s.steps:
                averages = {k: total / count for k, (total, count) in self.window.items()}
                prefix = self.task.metric_prefix
                self.tracker.log_metrics({f"{prefix}{k}": v for k, v in averages.items()}, step=at)
                self.window = {}
                self.bar.set_postfix(self.task.postfix(averages, losses), refresh=False)
        return None

    def _roll_back(self, bad_step: int, bad: dict) -> None:
        """Back to the newest saved state, or NonFiniteLossError when no retry is left. The
        window of the interrupted log interval is kept (as it always was)."""
        message = f"{self.task.name}: non-finite loss at step {bad_step}: {bad}"
        previous = self.store.latest(self._fits) if self.retries_left > 0 else None
        if previous is None:
            raise NonFiniteLossError(message)
        self.retries_left -= 1
        attempt = self.schedule.nonfinite_retries - self.retries_left
        self._restore(previous)
        self.step = previous["step"]
        torch.manual_seed(self.schedule.seed + 7919 * attempt)
        warnings.warn(
            f"{message}; rolled back to step {self.step}, {self.retries_left} retries left",
            stacklevel=1,
        )
        self.tracker.log_metrics({"nonfinite_rollbacks": attempt}, step=self.step)
        self.bar.reset(self.schedule.steps)
        self.bar.update(self.step)


def run_loop(
    task: Task,
    batches: InfiniteBatches,
    store: ResumeStore,
    tracker: StageRun,
    schedule: Schedule,
    *,
    label: str | None = None,
    accel: Accel | None = None,
) -> None:
    """Train `task` to `schedule.steps`, resuming from `store`'s newest state (it holds the
    run's lock meanwhile). `label` names the run in messages (default: the task's name);
    `accel` is the speed policy (kernel flags, autocast, deferred loss sync), none by default."""
    _Loop(task, batches, store, tracker, schedule, label or task.name, accel).run()


class OptimizerTask(Task):
    """One model, one optimizer: `losses(x, y)` gives the step's losses, the one minimised under
    "loss"; a step is losses → zero_grad → backward → optimizer step. The state is saved under
    `prefix` (the model) and "optim"; losses are logged as `<prefix>_<key>`; sample grids
    `step_*.png` in `samples_dir` newer than the resumed step are removed."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        optim: torch.optim.Optimizer,
        losses: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
        *,
        prefix: str,
        samples_dir: Path,
        shown: str = "{:.4f}",
        on_save: Callable[[int], None] | None = None,
    ) -> None:
        self.name, self.model, self.optim, self.losses = name, model, optim, losses
        self.prefix, self.metric_prefix = prefix, f"{prefix}_"
        self.samples_dir, self.shown, self._on_save = samples_dir, shown, on_save

    def train_step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        values = self.losses(*next_batch())
        self.optim.zero_grad(set_to_none=True)
        values["loss"].backward()
        self.optim.step()
        return values

    def state_dict(self) -> dict:
        return {self.prefix: self.model.state_dict(), "optim": self.optim.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state[self.prefix])
        self.optim.load_state_dict(state["optim"])

    def on_start(self, step: int) -> None:
        for old in self.samples_dir.glob("step_*.png"):  # persisted by DVC; stale beyond `step`
            if int(old.stem.split("_")[1]) > step:
                old.unlink()

    def postfix(self, averages: dict[str, float], losses: dict[str, float]) -> dict[str, str]:
        return {"loss": self.shown.format(averages["loss"])}

    def on_save(self, step: int) -> None:
        if self._on_save is not None:
            self._on_save(step)


# What may change across a resume of a pretraining: extending it, another logging cadence.
PRETRAINING_FREE = {"steps", "log_every", "sample_every"}


def run_pretraining(
    task: OptimizerTask,
    params,  # VAEParams | DAEParams: batch_size, seed, steps and the cadences
    train: tuple,
    tracker: StageRun,
    *,
    identity: dict,
    fingerprint: dict | None,
    store_name: str,
    resume_root: Path,
    device: torch.device | str,
    perf=None,  # PerfParams | None
) -> ResumeStore:
    """An autoencoder pretraining (the VAE, RFGAN's DAE) through the loop: seeded batches of
    `train` (images, labels), a resume state keyed by `identity` (architecture, init), every
    param but the cadences and `fingerprint` (data, files), the speed policy `perf`. Returns
    the store: the caller clears it once its final file is written."""
    batches = InfiniteBatches(*train, params.batch_size, seed=params.seed, device=device)
    fixed = params.model_dump(exclude=PRETRAINING_FREE)
    store = ResumeStore(store_name, {**identity, **fixed, **(fingerprint or {})}, resume_root)
    accel = Accel.from_params(perf, device)
    task = accel.prepare(task, batches)  # fused Adam, channels_last, compile
    schedule = Schedule(params.steps, params.log_every, params.sample_every)
    run_loop(task, batches, store, tracker, schedule, accel=accel)
    return store
