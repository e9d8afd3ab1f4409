"""Data-parallel training of one run over the processes `torchrun` starts.

    torchrun --standalone --nproc_per_node=2 -m ugan.training.distributed dcgan  # = train_gan@dcgan

Every process runs what the stage runs (`ugan.training.gan_run.run_train_gan`, the one training
loop) on its shard of each global batch; `data_parallel(group)` is the hook that makes the
processes one model, with the semantics of DistributedDataParallel:

- start: rank 0's parameters and buffers are broadcast to every rank;
- data: each global batch of `gan.batch_size` (the single-process batch) is split into
  contiguous per-rank shards (`InfiniteBatches.shard`);
- noise: every rank draws the whole global batch's latent noise from the same seeded stream and
  keeps its shard, so together the ranks see exactly the single process's z;
- gradients: averaged over ranks before every optimizer step (one all-reduce of a flat buffer,
  an optimizer step pre-hook), so all ranks take the same step and stay identical;
- losses: averaged over ranks, so the logs and the non-finite guard see the global batch on
  every rank at the same step.

Why not the `nn.parallel.DistributedDataParallel` wrapper itself: methods call their nets
directly (and checkpoints need the bare net classes), run the discriminator twice before one
backward, and gradient penalties differentiate twice, which the wrapper does not support.

BatchNorm: every BatchNorm becomes a synchronised one, so statistics are those of the global
batch, as in one process: a data-parallel run matches a single-process run up to float
rounding. `ugan.training.syncbn.DifferentiableSyncBatchNorm` on the CPU (torch has none) and in
every net a gradient penalty differentiates twice (the method's `twice_differentiated`); torch's
fused SyncBatchNorm, which has no double backward, in the other nets on CUDA.
Method state computed from the batch (BEGAN's k_t and learning-rate schedule) is computed from
the global batch's losses (the method's `_mean_over_ranks`), so every rank takes the same step.

One process per GPU: more processes on a machine than visible GPUs are refused before starting.
Dropout: the ranks share one RNG stream (that is what keeps the noise in step), so the shards of
one batch get the same dropout masks.

Only rank 0 writes the run's outputs and talks to MLflow; the other ranks write into a temporary
folder. Each rank keeps its own resume state (`.ugan/resume/ddp<N>/rank<r>`); the first step
checks that all ranks hold the same parameters, so ranks resumed from different steps stop with
an error instead of training apart.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ugan.config.load import load_params
from ugan.config.schema import Params
from ugan.core.device import resolve_device
from ugan.core.errors import UserError
from ugan.core.io import atomic_write_json
from ugan.core.paths import PARAMS_FILE, RESUME_ROOT, RunLayout
from ugan.core.runtime import entry_point
from ugan.training.accel import claim_deterministic_cublas, modules_of, optimizers_of
from ugan.training.gan_run import run_train_gan, stage_run
from ugan.training.syncbn import revert_sync_batchnorm, sync_batchnorm_class, to_sync_batchnorm

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # device type → process-group backend
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class NotLaunchedError(UserError, ValueError):
    """The module was started without torchrun's environment."""


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def backend(self) -> str:
        return BACKENDS[self.device.type]

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def check_ranks_fit_gpus(local_world_size: int, gpus: int, visible: str | None = None) -> None:
    """One GPU per process: local rank r trains on cuda:r. Refuse (UserError) when torchrun
    started more processes on this machine than it has visible GPUs; `visible` is
    CUDA_VISIBLE_DEVICES, named in the message."""
    if local_world_size <= gpus:
        return
    seen = f"{gpus} GPUs are visible" if gpus else "no GPU is visible"
    if visible is not None:
        seen += f" (CUDA_VISIBLE_DEVICES={visible})"
    fewer = f"start at most --nproc_per_node={gpus} processes, or " if gpus else ""
    raise UserError(
        f"torchrun started {local_world_size} processes on this machine but {seen}: each "
        f"process trains on its own GPU (local rank r on cuda:r), so local rank {gpus} would "
        f"have none. {fewer}set device: cpu to train on the CPU (gloo)"
    )


@contextlib.contextmanager
def process_group(
    device: str = "auto", timeout_s: float = 600, *, deterministic: bool = False
) -> Iterator[Group]:
    """Join the process group torchrun set up (env:// rendezvous): gloo on the CPU, nccl on
    CUDA with one GPU per local rank. `device` is params' `device` (auto | cpu | cuda);
    `deterministic` (perf.deterministic) sets cuBLAS's workspace before CUDA starts."""
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise NotLaunchedError(
            f"{', '.join(missing)} not set: start data-parallel training with "
            "`torchrun --nproc_per_node=N -m ugan.training.distributed RUN_KEY`"
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = resolve_device(device)
    if device.type == "cuda":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
        check_ranks_fit_gpus(
            max(local_world, local_rank + 1),
            torch.cuda.device_count(),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        if deterministic:
            claim_deterministic_cublas()
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    group = Group(rank, world, local_rank, device)
    dist.init_process_group(group.backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield group
    finally:
        dist.destroy_process_group()


# -- the hook ------------------------------------------------------------------------------


def _checksum(modules: Mapping[str, nn.Module], device: torch.device) -> torch.Tensor:
    """(3,) float64: sum, sum of squares and an index-weighted sum of every parameter."""
    flat = torch.cat(
        [p.detach().reshape(-1).double() for m in modules.values() for p in m.parameters()]
    )
    position = torch.arange(1, len(flat) + 1, dtype=torch.float64, device=flat.device)
    return torch.stack([flat.sum(), flat.square().sum(), (flat * position).sum()]).to(device)


def average_gradients(optimizer: torch.optim.Optimizer, world: int) -> None:
    """Replace the gradients of `optimizer`'s parameters by their mean over the ranks, with one
    all-reduce of a flat buffer."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    grads = [g for g in grads if g is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for grad, synced in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(synced.view_as(grad))


class DataParallelMethod:
    """A method whose gradients, noise and losses are shared across the ranks of `group`.
    Everything but `train_step` is the wrapped method's own (nets, prior, state dicts)."""

    def __init__(self, method, group: Group):
        self.method = method
        self.group = group
        self._checked = False
        modules = modules_of(method)
        twice = getattr(method, "twice_differentiated", {})
        for name, module in modules.items():
            sync = sync_batchnorm_class(group.device.type, twice_differentiated=name in twice)
            to_sync_batchnorm(module, sync)
        for module in modules.values():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)
        for optimizer in optimizers_of(method).values():
            optimizer.register_step_pre_hook(
                lambda opt, args, kwargs: average_gradients(opt, group.world)
            )
        draw = getattr(method, "_noise", None)
        if draw is None:
            raise TypeError(
                f"{type(method).__name__} has no _noise(batch, like): data-parallel training "
                "shards the global batch's noise through it"
            )

        def shard(batch: int, like: torch.Tensor) -> torch.Tensor:
            rank = group.rank
            return draw(batch * group.world, like)[rank * batch : (rank + 1) * batch]

        method._noise = shard
        if hasattr(method, "_mean_over_ranks"):  # batch statistics that steer the method
            method._mean_over_ranks = self._mean_over_ranks

    def _mean_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        dist.all_reduce(values)
        return values / self.group.world

    def __getattr__(self, name: str):
        return getattr(self.method, name)

    def check_replicas(self) -> None:
        """Raise unless every rank holds the same parameters."""
        mine = _checksum(modules_of(self.method), self.group.device)
        every = [torch.empty_like(mine) for _ in range(self.group.world)]
        dist.all_gather(every, mine)
        if any(not torch.equal(other, every[0]) for other in every):
            raise RuntimeError(
                "the data-parallel ranks hold different parameters (resumed from different "
                "states?); rerun with UGAN_FRESH_START=1"
            )

    def train_step(self, next_batch: Callable) -> dict[str, torch.Tensor]:
        if not self._checked:  # after any resume: all ranks must start from one state
            self.check_replicas()
            self._checked = True
        losses = self.method.train_step(next_batch)
        # Tensors averaged over the ranks in one all-reduce; host numbers (a learning rate) are
        # the same on every rank and stay on the host (a device copy would wait for the GPU).
        names = [name for name, value in losses.items() if torch.is_tensor(value)]
        if not names:
            return dict(losses)
        values = torch.stack([losses[n].detach().reshape(()).float() for n in names])
        averaged = dict(zip(names, self._mean_over_ranks(values).unbind(), strict=True))
        return {name: averaged.get(name, value) for name, value in losses.items()}


def data_parallel(group: Group) -> Callable:
    """The `wrap` hook of `train_gan`: shard the batches, wrap the method."""

    def wrap(method, batches) -> DataParallelMethod:
        batches.shard(group.rank, group.world)
        return DataParallelMethod(method, group)

    return wrap


def parameter_digest(modules: Mapping[str, nn.Module]) -> str:
    """SHA-256 of every parameter's bytes, nets in name order (buffers left out: BatchNorm
    running averages are per rank on the CPU)."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        for key, param in modules[name].named_parameters():
            digest.update(f"{name}.{key}".encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# -- trackers ------------------------------------------------------------------------------


class NullRun:
    """The tracker of ranks other than 0: accepts every StageRun call and records nothing."""

    run_id = None
    offline = False

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class _PlainModelRun:
    """Rank 0's tracker: logs the generator with plain BatchNorm (SyncBatchNorm is a training
    device detail; the exported model must load anywhere)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def __getattr__(self, name: str):
        return getattr(self.tracker, name)

    def log_torch_model(self, model, name, input_example) -> None:
        self.tracker.log_torch_model(revert_sync_batchnorm(model), name, input_example)


@contextlib.contextmanager
def _rank_tracker(p: Params, run_key: str, group: Group, tracked: dict) -> Iterator:
    """Rank 0: the run's MLflow stage run; other ranks: a NullRun."""
    if not group.is_main:
        yield NullRun()
        return
    with stage_run(p, run_key, tracked) as tracker:
        yield _PlainModelRun(tracker)


# -- the entry point -----------------------------------------------------------------------


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m ugan.training.distributed",
        description="train one run of params.yaml data-parallel over the torchrun processes",
    )
    parser.add_argument("run_key", help="a key of `runs:` in params.yaml")
    parser.add_argument("--params", default=str(PARAMS_FILE), help="params file")
    parser.add_argument("--out", default=None, help="run folder (default: runs/RUN_KEY)")
    return parser.parse_args(argv)


def main(*argv: str) -> None:
    """What each torchrun process runs: the stage's run (`run_train_gan`) on this rank's device
    and shard; rank 0 adds every rank's parameter digest to the summary."""
    args = _arguments(list(argv))
    p = load_params(args.params)
    with (
        process_group(p.device, deterministic=p.perf.deterministic) as group,
        tempfile.TemporaryDirectory() as scratch,
    ):
        out_dir = Path(args.out or Path("runs") / args.run_key)
        if not group.is_main:
            out_dir = Path(scratch) / "run"
        parallel = {"world_size": group.world, "backend": group.backend}
        holder: dict = {}
        hook = data_parallel(group)

        def wrap(method, batches):
            holder["method"] = hook(method, batches)
            return holder["method"]

        run_train_gan(
            p,
            args.run_key,
            device=group.device,
            out_dir=out_dir,
            resume_root=RESUME_ROOT / f"ddp{group.world}" / f"rank{group.rank}",
            wrap=wrap,
            tracked={"data_parallel": parallel},
            tags={"ugan.world_size": group.world},
            fingerprint={"world_size": group.world},
            open_tracker=functools.partial(_rank_tracker, p, args.run_key, group),
        )
        digest = parameter_digest(modules_of(holder["method"].method))
        digests: list = [None] * group.world
        dist.all_gather_object(digests, digest)
        if group.is_main:
            layout = RunLayout(out_dir)
            summary = json.loads(layout.summary.read_text())
            summary["data_parallel"] = {**parallel, "parameter_sha256": digests}
            atomic_write_json(layout.summary, summary)
        if len(set(digests)) != 1:
            raise RuntimeError(f"data-parallel ranks ended with different parameters: {digests}")


run = entry_point(main)  # `python -m ugan.training.distributed`: errors as a stage's


if __name__ == "__main__":
    run()
