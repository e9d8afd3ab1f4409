"""Where tensors live and how their random streams start: the device a stage computes on
(`device: auto | cpu | cuda`) and one seed for python, numpy and torch."""

from __future__ import annotations

import random

import numpy as np
import torch

from ugan.core.errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else the CPU; `cuda` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was requested but no CUDA GPU is visible")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a dedicated generator for the data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
