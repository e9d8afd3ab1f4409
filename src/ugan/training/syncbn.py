"""Synchronised BatchNorm for data-parallel training (`ugan.training.distributed`): statistics
over the union of every rank's batch. torch's `nn.SyncBatchNorm` runs on CUDA only; on the CPU
(gloo) `GlooSyncBatchNorm` does the same maths in plain tensor ops. `to_sync_batchnorm` swaps a
net's BatchNorm layers in place (same parameter objects, so optimizers keep updating them);
`revert_sync_batchnorm` swaps them back, for an exported model that loads anywhere."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


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
