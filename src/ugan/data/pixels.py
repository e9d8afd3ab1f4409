"""Pixels as the nets read and write them: uint8 [0, 255] ↔ float [-1, 1] (the range of the
generator's tanh)."""

from __future__ import annotations

import numpy as np
import torch


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1], the range of the generator's tanh."""
    tensor = torch.as_tensor(images)
    return tensor.float().div(127.5).sub(1.0)


def model_input(data: np.ndarray | torch.Tensor) -> torch.Tensor:
    """What the nets read: uint8 images → float [-1, 1]; float data (2-D points, already in
    the generator's range) as it is."""
    tensor = torch.as_tensor(data)
    return to_float(tensor) if tensor.dtype == torch.uint8 else tensor.float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255]."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
