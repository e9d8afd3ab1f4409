"""An endless, seeded, resumable stream of training minibatches.

Images stay uint8 on the training device (4× less memory than float, no host→device copy
per step) and are scaled to [-1, 1] per batch. The shuffle order comes from a dedicated
`torch.Generator`, whose state is part of a checkpoint so that a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from ugan.data.prepared import to_float


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
        self._order = torch.empty(0, dtype=torch.long)
        self._position = 0
        self.epoch = 0

    def _new_epoch(self) -> None:
        self._order = torch.randperm(len(self.images), generator=self.generator)
        self._position = 0
        self.epoch += 1

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float (B, C, H, W) in [-1, 1], labels (B,)); drops an epoch's ragged tail."""
        if self._position + self.batch_size > len(self._order):
            self._new_epoch()
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        index = index.to(self.images.device)
        return to_float(self.images[index]), self.labels[index]

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "order": self._order.clone(),
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].clone()
        self._position = int(state["position"])
        self.epoch = int(state["epoch"])
