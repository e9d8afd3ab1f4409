"""Mode-collapse detection: are different z giving near-identical images?

The spread of a generated set (mean distance between random pairs of images) is compared with
the spread of real images. A ratio far below 1 means the generator maps many z to a few outputs.
"""

from __future__ import annotations

import torch

COLLAPSE_RATIO = 0.25  # below a quarter of the real data's spread: flagged


@torch.no_grad()
def pairwise_spread(images: torch.Tensor, num_pairs: int = 500, seed: int = 0) -> float:
    """Mean L2 distance between random distinct pairs of images (uint8 or float), per pixel."""
    if len(images) < 2:
        raise ValueError(f"need at least 2 images to measure spread, got {len(images)}")
    x = images.float().flatten(1)
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(len(x), (num_pairs,), generator=generator)
    b = (a + torch.randint(1, len(x), (num_pairs,), generator=generator)) % len(x)
    return ((x[a] - x[b]).norm(dim=1) / x.shape[1] ** 0.5).mean().item()


def collapse_metrics(generated: torch.Tensor, reference: torch.Tensor, seed: int = 0) -> dict:
    """{"diversity_ratio": spread(generated) / spread(reference), "collapsed": 0 or 1}."""
    ratio = pairwise_spread(generated, seed=seed) / max(
        pairwise_spread(reference, seed=seed), 1e-12
    )
    return {"diversity_ratio": ratio, "collapsed": float(ratio < COLLAPSE_RATIO)}
