"""The sample grid's layout, pixel for pixel against torchvision's make_grid (which the project
no longer imports at stage start: it costs each stage process about 2 s)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from ugan.data.images import grid_image
from ugan.data.pixels import to_uint8


@pytest.mark.parametrize(("count", "channels", "nrow"), [(16, 1, None), (10, 3, 4), (3, 1, 5)])
def test_the_grid_is_torchvisions_pixel_for_pixel(count, channels, nrow):
    images = torch.rand(count, channels, 9, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = torch.as_tensor(np.asarray(grid_image(images, nrow)))
    rows = nrow or int(count**0.5)
    theirs = make_grid(to_uint8(images), nrow=rows, padding=2, pad_value=255).permute(1, 2, 0)
    assert ours.shape == theirs.shape and torch.equal(ours, theirs)
