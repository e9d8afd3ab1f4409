"""Stacked MNIST: three digits in the R, G and B channels of one image, 1,000 modes.

Built as in Metz et al. 2016 and GAAN §4.2 ("stacking three random digits to form an RGB image
(one digit per a channel) ... 1000 modes from 000 to 999"): every channel of every image is an
independently, uniformly drawn digit image (with replacement) from the prepared MNIST digits,
and the label is 100·d_R + 10·d_G + d_B. The same seed gives the same images.
`stacked_prepared` builds a whole prepared dataset whose train images come only from the train
digits and whose held-out images only from the held-out digits.
"""

from __future__ import annotations

import numpy as np

from ugan.data.prepared import HELDOUT, TRAIN, PreparedData

CHANNELS = 3
PLACE_VALUES = np.array([100, 10, 1], dtype=np.int64)  # R, G, B
NUM_MODES = 1000


def stack_digits(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """digits uint8 (M, 1, H, W) with labels 0..9 (M,) → images uint8 (count, 3, H, W) and
    labels int64 (count,) = 100·d_R + 10·d_G + d_B."""
    digits = np.asarray(digits)
    labels = np.asarray(labels)
    if digits.dtype != np.uint8 or digits.ndim != 4 or digits.shape[1] != 1:
        raise ValueError(
            f"digits must be grey uint8 (M, 1, H, W), got {digits.dtype} {digits.shape}"
        )
    if len(labels) != len(digits):
        raise ValueError(f"{len(digits)} digits but {len(labels)} labels")
    if len(digits) == 0:
        raise ValueError("no digits to stack")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"digit labels must lie in 0..9, got [{labels.min()}, {labels.max()}]")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(digits), size=(count, CHANNELS))  # (count, 3) digit indices
    images = digits[picks, 0]  # (count, 3, H, W)
    stacked_labels = labels[picks].astype(np.int64) @ PLACE_VALUES  # (count,)
    return np.ascontiguousarray(images), stacked_labels


def stacked_prepared(
    data: PreparedData, train_count: int, heldout_count: int, seed: int
) -> PreparedData:
    """A prepared Stacked MNIST dataset (num_classes 1000) from prepared MNIST digits."""
    if data.shape[0] != 1 or data.num_classes != 10:
        raise ValueError(
            f"Stacked MNIST needs grey digits with 10 classes; the prepared data has "
            f"{data.shape[0]} channel(s) and {data.num_classes} classes "
            f"(source {data.metadata.get('source', '?')!r})"
        )
    train = stack_digits(*data.train, train_count, seed)
    heldout = stack_digits(*data.heldout, heldout_count, seed + 1)
    split = np.concatenate(
        [np.full(train_count, TRAIN, np.uint8), np.full(heldout_count, HELDOUT, np.uint8)]
    )
    metadata = {
        "source": f"stacked({data.metadata.get('source', 'unknown')})",
        "num_classes": NUM_MODES,
        "stacked_seed": seed,
        "description": "Stacked MNIST: label = 100·d_R + 10·d_G + d_B",
    }
    return PreparedData(
        np.concatenate([train[0], heldout[0]]),
        np.concatenate([train[1], heldout[1]]),
        split,
        metadata,
    )
