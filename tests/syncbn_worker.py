"""One rank of the synchronised-BatchNorm check in tests/test_ddp.py, started by torchrun:
a small critic with a synchronised BatchNorm, trained on this rank's shard of one fixed global
batch with a loss that holds a WGAN-GP-style gradient penalty (a double backward through the
BatchNorm). Rank 0 writes the rank-averaged gradients and the running statistics to argv[1].
The test computes the same loss in one process, plain BatchNorm, on the whole batch."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn

BATCH = 8


def critic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2),  # 8×8 → 3×3
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(36, 1),
    )


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch: inputs, and the points the penalty is taken at."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 1, 8, 8, generator=generator) * 2 + 0.5
    points = torch.randn(BATCH, 1, 8, 8, generator=generator)
    return x, points


def loss(net: nn.Module, x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """mean D(x) + 10 · mean (‖∇ D(p)‖ − 1)²: the penalty's gradient is differentiated again."""
    points = points.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(points).sum(), points, create_graph=True)
    penalty = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
    return net(x).mean() + 10 * penalty


def main(out: str) -> None:
    from ugan.training.syncbn import GlooSyncBatchNorm, to_sync_batchnorm

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    net = to_sync_batchnorm(critic(), GlooSyncBatchNorm)
    x, points = batch()
    shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss(net, x[shard], points[shard]).backward()
    grads = {}
    for name, param in net.named_parameters():
        dist.all_reduce(param.grad)
        grads[name] = param.grad / world
    if rank == 0:
        torch.save({"grads": grads, "buffers": dict(net.named_buffers())}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
