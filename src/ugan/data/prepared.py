"""The prepared dataset: one `.npz` file that every later stage reads.

Arrays: `images` uint8 (N, C, H, W), `labels` int64 (N,), `split` uint8 (N,) with
TRAIN = 0 / HELDOUT = 1, and `metadata` — a JSON string (source, sizes, seed, class names).
Stored with `allow_pickle=False`, so loading runs no code. Torch-free (the `prepare` stage
imports no torch); the pixels as the nets read them are `ugan.data.pixels`.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ugan.core.errors import InputMissingError
from ugan.core.io import atomic_write_bytes

TRAIN, HELDOUT = 0, 1


@dataclass
class PreparedData:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    split: np.ndarray  # uint8 (N,)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if len(self.labels) != n or len(self.split) != n:
            raise ValueError(
                f"images, labels and split disagree in length: {n}, "
                f"{len(self.labels)}, {len(self.split)}"
            )

    def subset(self, which: int) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == which
        return self.images[mask], self.labels[mask]

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.subset(TRAIN)

    @property
    def heldout(self) -> tuple[np.ndarray, np.ndarray]:
        return self.subset(HELDOUT)

    @property
    def num_classes(self) -> int:
        """Classes of the labels (0 for unlabelled data), from the metadata or the labels."""
        if "num_classes" in self.metadata:
            return int(self.metadata["num_classes"])
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz (what np.savez_compressed writes) with fixed entry timestamps, so the
    same data always gives the same bytes: DVC hashes this file, and a rerun of `prepare` that
    changes nothing must not look like new data to every later stage."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w") as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_prepared(path: str | Path, data: PreparedData) -> None:
    arrays = {
        "images": data.images,
        "labels": data.labels.astype(np.int64),
        "split": data.split.astype(np.uint8),
        "metadata": np.array(json.dumps(data.metadata, sort_keys=True)),
    }
    atomic_write_bytes(path, _npz_bytes(arrays))


def load_prepared(path: str | Path) -> PreparedData:
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"prepared dataset {path} does not exist: run the prepare stage")
    with np.load(path, allow_pickle=False) as archive:
        return PreparedData(
            images=archive["images"],
            labels=archive["labels"],
            split=archive["split"],
            metadata=json.loads(str(archive["metadata"])),
        )
