"""Writers of the published dataset formats, byte for byte: gzip'd IDX (MNIST), CIFAR-10's
python pickles as Python 2's cPickle wrote them, and JPEG / PNG / WebP images (tests only)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ugan.data.formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC

rng = np.random.default_rng(0)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX: big-endian int32 magic (0x0000 08 ndim), one big-endian uint32 per dim, the bytes."""
    header = struct.pack(">i", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train=30, n_test=10, *, gz=True, size=28) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for stem, array, magic in (
            (f"{prefix}-images-idx3-ubyte", images, IDX_IMAGES_MAGIC),
            (f"{prefix}-labels-idx1-ubyte", labels, IDX_LABELS_MAGIC),
        ):
            data = idx_bytes(array, magic)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        arrays[prefix] = (images, labels)
    return arrays


def _py2_str(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_int(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    return b"J" + struct.pack("<i", n)


def _py2_value(value) -> bytes:
    if isinstance(value, np.ndarray):  # numpy's own reduce, as Python 2 numpy wrote it
        dtype = (
            b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R("
            + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1)
            + _py2_int(0) + b"tb"
        )  # fmt: skip
        shape = b"(" + b"".join(_py2_int(d) for d in value.shape) + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85"
            + _py2_str(b"b") + b"\x87R(" + _py2_int(1) + shape + dtype + b"\x89"
            + _py2_str(value.tobytes()) + b"tb"
        )  # fmt: skip
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    if isinstance(value, str):
        return _py2_str(value.encode())
    return _py2_int(value)


def py2_pickle(batch: dict[str, object]) -> bytes:
    """A dict pickled the way Python 2's cPickle wrote the real CIFAR-10 files (protocol 2,
    str as SHORT_BINSTRING / BINSTRING, the array through numpy.core.multiarray._reconstruct)."""
    items = b"".join(_py2_str(k.encode()) + _py2_value(v) for k, v in batch.items())
    return b"\x80\x02}(" + items + b"u."


CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_batch(name: str, n: int) -> dict[str, object]:
    return {
        "batch_label": f"{name} of 6",
        "labels": [int(x) for x in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def write_cifar(root: Path, n=8, *, style="py2") -> dict[str, dict]:
    """cifar-10-batches-py/ under root: "py2" as the published files, "bytes" / "latin1" as
    Python 3's pickle.dump(protocol=2) of a dict with bytes / str keys."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {name: cifar_batch(name, n) for name in [*(f"data_batch_{i}" for i in range(1, 6))]}
    batches["test_batch"] = cifar_batch("test_batch", n)
    meta = {"label_names": CLASSES, "num_cases_per_batch": n, "num_vis": 3072}
    for name, content in [*batches.items(), ("batches.meta", meta)]:
        if style == "py2":
            blob = py2_pickle(content)
        elif style == "bytes":
            blob = pickle.dumps(_to_bytes(content), protocol=2)
        else:
            blob = pickle.dumps(content, protocol=2)
        (folder / name).write_bytes(blob)
    return batches


def _to_bytes(obj):
    if isinstance(obj, dict):
        return {k.encode(): _to_bytes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_bytes(v) for v in obj]
    return obj.encode() if isinstance(obj, str) else obj


def write_image(path: Path, size: tuple[int, int], fmt: str, mode="RGB", color=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if len(mode) == 1 else pixels, mode)
    if color is not None:
        image = Image.new(mode, size, color)
    image.save(path, fmt)
