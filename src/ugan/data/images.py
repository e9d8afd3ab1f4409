"""Sample grids as PNG files, written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from ugan.core.io import atomic_write_bytes
from ugan.data.prepared import to_uint8


def grid_image(images: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """images float (N, C, H, W) in [-1, 1] → one PIL image, √N per row by default."""
    nrow = nrow or max(1, int(math.sqrt(len(images))))
    grid = make_grid(to_uint8(images.cpu()), nrow=nrow, padding=2, pad_value=255)
    array = grid.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    buffer = io.BytesIO()
    grid_image(images, nrow).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
