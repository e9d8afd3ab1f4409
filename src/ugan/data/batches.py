"""An endless, seeded, resumable stream of training minibatches.

Images stay uint8 on the training device (4× less memory than float, no host→device copy
per step) and are scaled to [-1, 1] per batch. The shuffle order comes from a dedicated
`torch.Generator`, whose state is part of a checkpoint so that a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from ugan.data.pixels import model_input


class InfiniteBatches:
    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        device: torch.device | str = "cpu",
    ):
        if len(images) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {len(images)} training images available"
            )
        self.images = torch.as_tensor(images).to(device)
        self.labels = torch.as_tensor(labels).to(device)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long, device=self.images.device)
        self._position = 0
        self.epoch = 0
        self.memory_format = torch.contiguous_format  # channels_last: see ugan.training.accel
        self.rank, self.world = 0, 1  # data-parallel shard: see `shard`

    def shard(self, rank: int, world: int) -> None:
        """Yield rows [rank·b, (rank+1)·b) of each global batch of `batch_size`, b =
        batch_size / world: the ranks of a data-parallel run split the single-process batch."""
        if self.batch_size % world:
            raise ValueError(
                f"gan.batch_size ({self.batch_size}) must be divisible by the {world} "
                "data-parallel processes"
            )
        self.rank, self.world = rank, world

    def _new_epoch(self) -> None:
        # Drawn on the CPU (the seeded stream), moved once per epoch: no copy per step.
        order = torch.randperm(len(self.images), generator=self.generator)
        if self.images.device.type == "cuda":
            # A blocking host→device copy would make the host wait for the GPU once per epoch:
            # from pinned memory the copy is queued on the stream like any kernel.
            order = order.pin_memory()
        self._order = order.to(self.images.device, non_blocking=True)
        self._position = 0
        self.epoch += 1

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float (B, C, H, W) in [-1, 1] — or float rows (B, D) of points —, labels
        (B,)); drops an epoch's ragged tail."""
        if self._position + self.batch_size > len(self._order):
            self._new_epoch()
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        if self.world > 1:
            local = self.batch_size // self.world
            index = index[self.rank * local : (self.rank + 1) * local]
        images = model_input(self.images[index])
        if images.ndim == 4:
            images = images.contiguous(memory_format=self.memory_format)
        return images, self.labels[index]

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "order": self._order.cpu().clone(),
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].to(self.images.device)
        self._position = int(state["position"])
        self.epoch = int(state["epoch"])
