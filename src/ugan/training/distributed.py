"""Data-parallel training of one run over the processes `torchrun` starts.

    torchrun --standalone --nproc_per_node=2 -m ugan.training.distributed dcgan  # = train_gan@dcgan

Every process runs the ordinary training loop (`ugan.training.gan.train_gan`) on its shard of each
global batch; `data_parallel(group)` is the hook that makes the processes one model, with the
semantics of DistributedDataParallel:

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

BatchNorm: every BatchNorm becomes a synchronised one (torch's SyncBatchNorm on CUDA, this
module's GlooSyncBatchNorm on the CPU, where torch has none), so statistics are those of the
global batch, as in one process: a data-parallel run matches a single-process run up to float
rounding.
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
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ugan.core.errors import UserError
from ugan.training.accel import modules_of, optimizers_of

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


@contextlib.contextmanager
def process_group(device: str = "auto", timeout_s: float = 600) -> Iterator[Group]:
    """Join the process group torchrun set up (env:// rendezvous): gloo on the CPU, nccl on
    CUDA with one GPU per local rank. `device` is params' `device` (auto | cpu | cuda)."""
    from ugan.core.runtime import resolve_device

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
        for module in modules.values():
            to_sync_batchnorm(module, SYNC_BATCHNORM[group.device.type])
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
        values = torch.stack(
            [
                v.detach().reshape(()).float()
                if torch.is_tensor(v)
                else torch.tensor(float(v), device=self.group.device)
                for v in losses.values()
            ]
        ).to(self.group.device)
        dist.all_reduce(values)
        values /= self.group.world
        return dict(zip(losses, values.unbind(), strict=True))


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


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm over the union of every rank's batch, in plain tensor ops (so it runs under
    gloo on the CPU): forward all-reduces each channel's sum, sum of squares and count, backward
    the sums of dy and dy·x̂ — the maths of torch.nn.SyncBatchNorm. The weight and bias
    gradients stay local: the optimizer hook averages them with the other gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps: float, momentum: float):
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        channels = x.shape[1]
        xd = x.double()
        count = torch.tensor([x.numel() / channels], dtype=torch.float64, device=x.device)
        stats = torch.cat([xd.sum(dims), xd.square().sum(dims), count])
        dist.all_reduce(stats)
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean.square()).clamp_min(0)
        invstd = (var + eps).rsqrt()
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            unbiased = (var * total / (total - 1)).to(running_var.dtype)
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        xhat = ((xd - mean.view(shape)) * invstd.view(shape)).to(x.dtype)
        ctx.save_for_backward(xhat, weight, invstd.to(x.dtype))
        ctx.total = float(total)
        out = xhat
        if weight is not None:
            out = out * weight.view(shape) + bias.view(shape)
        return out

    @staticmethod
    def backward(ctx, dy):
        xhat, weight, invstd = ctx.saved_tensors
        dims = [0, *range(2, dy.dim())]
        shape = [1, dy.shape[1]] + [1] * (dy.dim() - 2)
        sum_dy, sum_dy_xhat = dy.sum(dims), (dy * xhat).sum(dims)
        grad_weight = sum_dy_xhat.clone() if weight is not None else None
        grad_bias = sum_dy.clone() if weight is not None else None
        reduced = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(reduced)
        mean_dy, mean_dy_xhat = (reduced / ctx.total).chunk(2)
        scale = invstd if weight is None else invstd * weight
        dx = (dy - mean_dy.view(shape) - xhat * mean_dy_xhat.view(shape)) * scale.view(shape)
        return dx.to(xhat.dtype), grad_weight, grad_bias, None, None, None, None


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for any device (torch's own runs on CUDA only). Outside training, or with
    one rank, it is plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
        return _SyncBatchNormFunction.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.eps,
            self.momentum if self.momentum is not None else 0.1,
        )


SYNC_BATCHNORM = {"cuda": nn.SyncBatchNorm, "cpu": GlooSyncBatchNorm}  # device type → class


def _swap_batchnorm(module: nn.Module, make: Callable[[nn.Module], nn.Module | None]) -> None:
    for name, child in module.named_children():
        replacement = make(child)
        if replacement is None:
            _swap_batchnorm(child, make)
            continue
        # The same Parameter and buffer objects: optimizers keep updating them.
        for key, param in child.named_parameters(recurse=False):
            setattr(replacement, key, param)
        for key, buffer in child.named_buffers(recurse=False):
            setattr(replacement, key, buffer)
        replacement.train(child.training)
        setattr(module, name, replacement)


def to_sync_batchnorm(module: nn.Module, sync_class: type = nn.SyncBatchNorm) -> nn.Module:
    """BatchNorm1d / 2d layers → `sync_class` (same parameter objects), in place; each
    remembers its class for `revert_sync_batchnorm`."""

    def make(child: nn.Module) -> nn.Module | None:
        if not isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return None
        sync = sync_class(
            child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
        )
        sync.plain_class = type(child)
        return sync

    _swap_batchnorm(module, make)
    return module


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """SyncBatchNorm layers back to the BatchNorm class they came from (same state), in place."""

    def make(child: nn.Module) -> nn.Module | None:
        if not isinstance(child, tuple(SYNC_BATCHNORM.values())):
            return None
        plain = getattr(child, "plain_class", nn.BatchNorm2d)
        return plain(
            child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
        )

    _swap_batchnorm(module, make)
    return module


# -- the entry point -----------------------------------------------------------------------


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m ugan.training.distributed",
        description="train one run of params.yaml data-parallel over the torchrun processes",
    )
    parser.add_argument("run_key", help="a key of `runs:` in params.yaml")
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", default=None, help="run folder (default: runs/RUN_KEY)")
    return parser.parse_args(argv)


def main(*argv: str) -> None:
    from ugan.config.load import load_params
    from ugan.core.digests import file_digest
    from ugan.core.io import atomic_write_json, load_checkpoint
    from ugan.core.paths import RESUME_ROOT, RunLayout
    from ugan.data.prepared import load_prepared
    from ugan.tracking.stage_run import StageRun
    from ugan.training.gan import train_gan

    args = _arguments(list(argv))
    p = load_params(args.params)
    run = p.run(args.run_key)
    init_path, data_path = f"models/init/{run.init}.pt", "data/prepared/dataset.npz"
    init, data = load_checkpoint(init_path), load_prepared(data_path)
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    with process_group(p.device) as group, tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(args.out or Path("runs") / args.run_key)
        if not group.is_main:
            out_dir = Path(scratch) / "run"
        parallel = {"world_size": group.world, "backend": group.backend}
        tracked = {
            "run": p.runs[args.run_key].model_dump(exclude_none=True),
            "gan": run.gan.model_dump(),
            "model": p.model.model_dump(),
            "perf": p.perf.model_dump(),
            "device": str(group.device),
            "data_parallel": parallel,
        }
        tracker_cm = (
            StageRun(
                "train_gan",
                tracked,
                run_key=args.run_key,
                experiment=p.tracking.experiment,
                log_models=p.tracking.log_models,
            )
            if group.is_main
            else contextlib.nullcontext(NullRun())
        )
        holder: dict = {}
        hook = data_parallel(group)

        def wrap(method, batches):
            holder["method"] = hook(method, batches)
            return holder["method"]

        with tracker_cm as tracker:
            tracker.set_tags({"ugan.init": run.init, "ugan.world_size": group.world})
            train_gan(
                args.run_key,
                run,
                arch,
                data,
                init,
                out_dir,
                _PlainModelRun(tracker) if group.is_main else tracker,
                init_std=p.model.init_std,
                device=group.device,
                fingerprint={
                    "data": file_digest(data_path),
                    "init_file": file_digest(init_path),
                    "world_size": group.world,
                },
                resume_root=RESUME_ROOT / f"ddp{group.world}" / f"rank{group.rank}",
                perf=p.perf,
                wrap=wrap,
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


def run() -> None:
    from ugan.pipeline.stage import entry_point

    entry_point(main)()


if __name__ == "__main__":
    sys.exit(run())
