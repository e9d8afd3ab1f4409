"""Sample grids as PNG files, written atomically.

The grid is laid out here rather than by `torchvision.utils.make_grid`: importing torchvision
costs every stage process about 2 s (it pulls in its models and torch._dynamo), for a few lines
of array indexing. `tests/test_images.py` checks the layout pixel for pixel against
torchvision's (padding 2, white, grayscale repeated to RGB)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ugan.core.io import atomic_write_bytes
from ugan.data.pixels import to_uint8

PADDING = 2
PAD_VALUE = 255


def grid_array(images: np.ndarray, nrow: int) -> np.ndarray:
    """uint8 (N, C, H, W) → uint8 (rows·(H+2)+2, cols·(W+2)+2, 3): `nrow` images per row, a
    2-pixel white border around each, grayscale repeated to RGB (as make_grid does)."""
    n, channels, height, width = images.shape
    if channels == 1:
        images = np.repeat(images, 3, axis=1)
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = height + PADDING, width + PADDING
    grid = np.full(
        (rows * cell_h + PADDING, cols * cell_w + PADDING, images.shape[1]), PAD_VALUE, np.uint8
    )
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        top, left = row * cell_h + PADDING, col * cell_w + PADDING
        grid[top : top + height, left : left + width] = image.transpose(1, 2, 0)
    return grid


def grid_image(images: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """images float (N, C, H, W) in [-1, 1] → one PIL image, √N per row by default."""
    nrow = nrow or max(1, int(math.sqrt(len(images))))
    return Image.fromarray(grid_array(to_uint8(images.cpu()).numpy(), nrow))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    buffer = io.BytesIO()
    grid_image(images, nrow).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
