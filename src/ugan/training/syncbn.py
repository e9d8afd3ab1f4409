"""Synchronised BatchNorm for data-parallel training (`ugan.training.distributed`): statistics
over the union of every rank's batch.

`DifferentiableSyncBatchNorm` is batch norm in plain tensor ops around one differentiable
all-reduce (`torch.distributed.nn.functional.all_reduce`, whose backward is again an
all-reduce), so autograd differentiates it as often as asked, across ranks: a gradient penalty
through it gets the gradients of one process on the whole batch. It runs under gloo (the CPU,
where torch has no SyncBatchNorm) and nccl. torch's `nn.SyncBatchNorm` (CUDA, fused kernels) has
no double backward (pytorch#61222): it serves only nets a step differentiates once
(`sync_batchnorm_class`).

`to_sync_batchnorm` swaps a net's BatchNorm layers in place (same parameter objects, so
optimizers keep updating them); `revert_sync_batchnorm` swaps them back, for an exported model
that loads anywhere."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce


def global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, biased variance, count) per channel of `x` (N, C, …) over every rank's batch, in
    float32, differentiable to any order. Each rank contributes its count, mean and centred sum
    of squares in its own row of a (world, 2C + 1) buffer; one all-reduce gathers the rows, and
    Chan's formula combines them (no E[x²] − E[x]² cancellation, no host sync)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]
    xf = x.float()
    mean = xf.mean(dims)
    centred = (xf - mean.view(1, channels, *[1] * (x.dim() - 2))).square().sum(dims)
    row = torch.cat([mean.new_full((1,), x.numel() / channels), mean, centred])
    rows = differentiable_all_reduce(
        torch.stack([row if r == rank else torch.zeros_like(row) for r in range(world)])
    )
    counts, means, sums = rows[:, :1], rows[:, 1 : channels + 1], rows[:, channels + 1 :]
    total = counts.sum()
    global_mean = (counts * means).sum(0) / total
    spread = (sums + counts * (means - global_mean).square()).sum(0)
    return global_mean, spread / total, total


class DifferentiableSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for any device and backend, differentiable twice (see the module). Outside
    training, or with one rank, it is plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        mean, var, total = global_moments(x)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 0.1
            with torch.no_grad():
                unbiased = var * total / (total - 1)
                running = ((self.running_mean, mean), (self.running_var, unbiased))
                for buffer, batch in running:
                    buffer.mul_(1 - momentum).add_(batch.to(buffer.dtype), alpha=momentum)
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        out = (x.float() - mean.view(shape)) * (var + self.eps).rsqrt().view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


GlooSyncBatchNorm = DifferentiableSyncBatchNorm  # its name while it served the CPU only
SYNC_BATCHNORM = (nn.SyncBatchNorm, DifferentiableSyncBatchNorm)


def sync_batchnorm_class(device_type: str, *, twice_differentiated: bool) -> type[nn.Module]:
    """torch's fused SyncBatchNorm on CUDA for a net differentiated once; else ours."""
    if device_type == "cuda" and not twice_differentiated:
        return nn.SyncBatchNorm
    return DifferentiableSyncBatchNorm


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
        if not isinstance(child, SYNC_BATCHNORM):
            return None
        plain = getattr(child, "plain_class", nn.BatchNorm2d)
        return plain(
            child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
        )

    _swap_batchnorm(module, make)
    return module
