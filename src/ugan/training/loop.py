"""The resumable loop shared by the autoencoder pre-trainings (the VAE of `ugan.pretrain`, RFGAN's
DAE of `ugan.dae`): seeded batches, a state saved every `save_every` steps and on SIGTERM /
Ctrl-C, resume from the newest state, window-averaged losses to MLflow, and a stop on the first
non-finite loss. What one step computes belongs to the caller."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ugan.core.errors import NonFiniteLossError
from ugan.core.runtime import progress
from ugan.data.batches import InfiniteBatches
from ugan.tracking.stage_run import StageRun
from ugan.training.resume import ResumeStore, StopRequest, capture_rng, restore_rng


def run_pretraining(
    name: str,
    model: nn.Module,
    optim: torch.optim.Optimizer,
    batches: InfiniteBatches,
    store: ResumeStore,
    tracker: StageRun,
    *,
    steps: int,
    log_every: int,
    save_every: int,
    samples_dir: Path,
    losses: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    prefix: str,
    shown: str = "{:.4f}",
    on_save: Callable[[int], None] | None = None,
) -> None:
    """Train `model` to `steps`. `losses(x, y)` returns the step's losses, the one minimised
    under "loss"; each is logged as `<prefix>_<key>`, averaged over the log window. `on_save(step)`
    runs before each state save (a sample grid, say). The model's state is saved under
    `prefix`."""
    window: dict[str, float] = {}
    count = 0
    with store, StopRequest() as stop:
        state = store.latest()
        step = state["step"] if state else 0
        for old in samples_dir.glob("step_*.png"):  # persisted by DVC; stale beyond `step`
            if int(old.stem.split("_")[1]) > step:
                old.unlink()
        if state:
            model.load_state_dict(state[prefix])
            optim.load_state_dict(state["optim"])
            batches.load_state_dict(state["batches"])
            restore_rng(state["rng"])
            tracker.mark_interrupted(state.get("mlflow_run_id"))
            tracker.set_tags({"ugan.resumed_from_step": step})

        def snapshot() -> dict:
            return {
                prefix: model.state_dict(),
                "optim": optim.state_dict(),
                "batches": batches.state_dict(),
                "rng": capture_rng(),
                "mlflow_run_id": tracker.run_id or "",
            }

        with progress(steps, name) as bar:
            bar.update(step)
            while step < steps:
                try:
                    stop.check()
                except KeyboardInterrupt:
                    store.save(step, snapshot())
                    raise
                values = losses(*batches.next())
                floats = {k: v.item() for k, v in values.items()}
                if not math.isfinite(floats["loss"]):
                    raise NonFiniteLossError(
                        f"{name}: non-finite loss at step {step + 1}: {floats}"
                    )
                optim.zero_grad(set_to_none=True)
                values["loss"].backward()
                optim.step()
                step += 1
                for key, value in floats.items():
                    window[key] = window.get(key, 0.0) + value
                count += 1
                if step % log_every == 0 or step == steps:
                    averages = {f"{prefix}_{k}": v / count for k, v in window.items()}
                    tracker.log_metrics(averages, step=step)
                    bar.set_postfix(loss=shown.format(averages[f"{prefix}_loss"]), refresh=False)
                    window, count = {}, 0
                if step % save_every == 0 or step == steps:
                    if on_save is not None:
                        on_save(step)
                    store.save(step, snapshot())
                bar.update(1)
