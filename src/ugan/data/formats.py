"""Readers for datasets in their published on-disk formats, with no download step.

- MNIST IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-…`), plain or
  gzip'd; the IDX header (big-endian magic 2051 / 2049, then one uint32 per dimension) is parsed
  here. A .gz is decompressed incrementally and never past the size its header declares (at
  most MAX_IDX_BYTES), so a gzip bomb is refused after that much, whatever it expands to.
- CIFAR-10 python pickles (`cifar-10-batches-py/data_batch_1..5`, `test_batch`, `batches.meta`),
  read with a restricted unpickler (`ugan.data.safe_pickle`) that can build dicts, lists,
  strings, ints and numpy arrays no larger than the file and nothing else, so a crafted batch
  file can neither run code nor allocate without bound.
- Image folders (LSUN bedroom or CelebA exported as JPEG / PNG / WebP, possibly nested): every
  image is resized on its shorter side and centre-cropped to a square, in RGB. 16-bit grayscale
  is scaled to 8 bits (0..65535 → 0..255); an image over MAX_IMAGE_PIXELS is refused from its
  header, before it is decoded.

Every reader returns uint8 images (N, C, H, W) and int64 labels. A missing file raises
FileNotFoundError and a corrupt one SourceFormatError (a ValueError); both name the file and what
was expected there.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from ugan.core.errors import InputError, InputMissingError
from ugan.core.runtime import progress
from ugan.data.safe_pickle import RefusedGlobalError, RestrictedUnpickler

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASSES = tuple(str(d) for d in range(10))

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR_META = "batches.meta"
CIFAR_SIDE = 32

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
# Bounds on what a header may make a reader allocate. IDX: MNIST's train images are 47 MB,
# EMNIST's largest file 550 MB. Images: PIL's own default (a 128 MiB 24-bit image, ~9459²),
# applied here whatever Image.MAX_IMAGE_PIXELS is set to.
MAX_IDX_BYTES = 1 << 30
MAX_IMAGE_PIXELS = 89_478_485


class SourceFormatError(InputError):
    """A dataset file exists but does not hold what its format promises."""


class Decoded(NamedTuple):
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    class_names: tuple[str, ...]  # empty for unlabelled data


# -- MNIST IDX ---------------------------------------------------------------------------------


def _idx_header(stream: BinaryIO, expected_magic: int, name: str) -> tuple[int, ...]:
    """The dimensions an IDX header declares, read from the start of `stream`."""
    head = stream.read(4)
    if len(head) < 4:
        raise SourceFormatError(
            f"{name}: expected an IDX header (magic {expected_magic}), got {len(head)} bytes"
        )
    magic = int.from_bytes(head, "big")
    if magic != expected_magic:
        raise SourceFormatError(f"{name}: expected IDX magic {expected_magic}, got {magic}")
    ndim = magic & 0xFF
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise SourceFormatError(
            f"{name}: expected {ndim} big-endian uint32 dimensions after the magic, "
            f"the file ends after {4 + len(raw)} bytes"
        )
    return tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim))


def _read_idx_stream(
    stream: BinaryIO, expected_magic: int, name: str, max_bytes: int = MAX_IDX_BYTES
) -> np.ndarray:
    """An IDX stream → uint8 array of the dimensions its header declares. Reads at most the
    declared size plus one byte, and refuses a declared size above `max_bytes` before reading
    any data: a gzip bomb or a lying header cannot make it hold more."""
    dims = _idx_header(stream, expected_magic, name)
    expected = math.prod(dims)
    if expected > max_bytes:
        raise SourceFormatError(
            f"{name}: the header declares dimensions {dims}, {expected} bytes of data; refusing "
            f"more than {max_bytes} bytes (ugan.data.formats.MAX_IDX_BYTES)"
        )
    data = stream.read(expected + 1)
    found = len(data)
    if found < expected:
        raise SourceFormatError(
            f"{name}: expected {expected} bytes of data for dimensions {dims}, found {found} "
            "(truncated)"
        )
    if found > expected:
        raise SourceFormatError(
            f"{name}: expected {expected} bytes of data for dimensions {dims}, found more "
            f"(trailing bytes; reading stopped at {expected} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise InputMissingError(
        f"{folder / stem}: expected the MNIST IDX file {stem} (or {stem}.gz) in {folder}"
    )


def read_idx(path: Path, expected_magic: int, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """One IDX file, plain or gzip'd (decompressed incrementally, never past the declared size)."""
    if path.suffix != ".gz":
        with open(path, "rb") as handle:
            return _read_idx_stream(handle, expected_magic, str(path), max_bytes)
    try:
        with gzip.open(path, "rb") as handle:
            return _read_idx_stream(handle, expected_magic, str(path), max_bytes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise SourceFormatError(
            f"{path}: expected a complete gzip stream, the file is corrupt or truncated ({exc})"
        ) from None


def read_mnist_idx(folder: str | Path) -> Decoded:
    """The train and t10k IDX pairs of `folder`, concatenated (the pipeline makes its own split)."""
    folder = Path(folder)
    images, labels = [], []
    for images_stem, labels_stem in MNIST_FILES.values():
        images_path, labels_path = _find_idx(folder, images_stem), _find_idx(folder, labels_stem)
        x = read_idx(images_path, IDX_IMAGES_MAGIC)  # (N, 28, 28)
        y = read_idx(labels_path, IDX_LABELS_MAGIC)  # (N,)
        if len(x) != len(y):
            raise SourceFormatError(
                f"{labels_path}: expected {len(x)} labels (one per image of {images_path.name}), "
                f"got {len(y)}"
            )
        if len(y) and int(y.max()) >= len(MNIST_CLASSES):
            raise SourceFormatError(
                f"{labels_path}: expected digit labels 0..9, got {int(y.max())}"
            )
        images.append(x[:, None])  # (N, 1, 28, 28)
        labels.append(y.astype(np.int64))
    shapes = {x.shape[1:] for x in images}
    if len(shapes) != 1:
        raise SourceFormatError(f"{folder}: train and t10k images differ in size: {shapes}")
    return Decoded(np.concatenate(images), np.concatenate(labels), MNIST_CLASSES)


# -- CIFAR-10 python pickles -------------------------------------------------------------------


def load_restricted_pickle(path: Path) -> object:
    """Unpickle `path` (Python 2 or 3, bytes keys kept as bytes) with RestrictedUnpickler."""
    if not path.is_file():
        raise InputMissingError(f"{path}: expected a CIFAR-10 python pickle")
    try:
        with open(path, "rb") as handle:
            limit = os.fstat(handle.fileno()).st_size  # an array's bytes are in the file
            return RestrictedUnpickler(handle, max_array_bytes=limit, encoding="bytes").load()
    except RefusedGlobalError as exc:
        raise SourceFormatError(f"{path}: expected a CIFAR-10 python pickle: {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        raise SourceFormatError(
            f"{path}: expected a CIFAR-10 python pickle, the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _str_keys(obj: object, path: Path) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise SourceFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → uint8 (N, 3, 32, 32) images and int64 labels."""
    batch = _str_keys(load_restricted_pickle(path), path)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise SourceFormatError(
            f"{path}: expected a dict with keys 'data' and 'labels', missing {missing} "
            f"(found {sorted(batch)})"
        )
    data, labels = batch["data"], np.asarray(batch["labels"])
    row = 3 * CIFAR_SIDE * CIFAR_SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise SourceFormatError(
            f"{path}: expected 'data' as a uint8 array (N, {row}), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        )
    if data.shape[1] != row:
        raise SourceFormatError(f"{path}: expected 'data' of shape (N, {row}), got {data.shape}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise SourceFormatError(
            f"{path}: expected {len(data)} integer 'labels', got {labels.dtype} {labels.shape}"
        )
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
        raise SourceFormatError(f"{path}: expected labels 0..9, got {labels.min()}..{labels.max()}")
    # Each row is 1024 red, 1024 green, 1024 blue values, row-major.
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), labels.astype(np.int64)


def _cifar_folder(path: Path) -> Path:
    if (path / CIFAR_DIR).is_dir():
        return path / CIFAR_DIR
    if path.name == CIFAR_DIR or (path / CIFAR_BATCHES[0]).exists():
        return path
    hint = (
        f"; found {CIFAR_ARCHIVE}: extract it with `tar xzf {path / CIFAR_ARCHIVE} -C {path}`"
        if (path / CIFAR_ARCHIVE).is_file()
        else ""
    )
    raise InputMissingError(
        f"{path / CIFAR_DIR}: expected the CIFAR-10 python folder ({', '.join(CIFAR_BATCHES)}, "
        f"{CIFAR_META}) in {path}{hint}"
    )


def read_cifar10(path: str | Path) -> Decoded:
    """All six batches of `cifar-10-batches-py` (in `path` or `path` itself), concatenated."""
    folder = _cifar_folder(Path(path))
    meta_path = folder / CIFAR_META
    meta = _str_keys(load_restricted_pickle(meta_path), meta_path)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise SourceFormatError(f"{meta_path}: expected 'label_names', a list of 10 class names")
    class_names = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    images, labels = zip(*(load_cifar_batch(folder / name) for name in CIFAR_BATCHES), strict=True)
    return Decoded(np.concatenate(images), np.concatenate(labels), class_names)


# -- image folders -----------------------------------------------------------------------------


def list_images(root: Path) -> list[Path]:
    """Image files under `root` at any depth, sorted; hidden files and folders are skipped."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


class ImageTooLargeError(SourceFormatError):
    """An image's header declares more pixels than MAX_IMAGE_PIXELS."""


def _check_pixels(path: Path, dimensions: tuple[int, int]) -> None:
    width, height = dimensions
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"{path}: refusing the image, its header declares {width}×{height} = "
            f"{width * height} pixels, more than {MAX_IMAGE_PIXELS} (a decompression bomb, or "
            "an image far larger than any training image needs)"
        )


def _to_8bit(image):
    """16-bit grayscale (PIL modes I;16*, or I from older Pillow) → 8-bit L, 0..65535 scaled to
    0..255 (PIL's own convert clips at 255 instead: nearly every pixel would be white)."""
    from PIL import Image

    if not (image.mode.startswith("I;16") or image.mode == "I"):
        return image
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def load_image(path: Path, size: int) -> np.ndarray:
    """One image file → uint8 (3, size, size): shorter side resized to `size`, centre crop, RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                _check_pixels(path, image.size)
                image.draft(None, (size, size))  # JPEG: decode at a reduced scale ≥ size (fast)
                image = _to_8bit(ImageOps.exif_transpose(image))
                if image.mode in ("P", "PA", "LA", "RGBA", "La") or "transparency" in image.info:
                    image = image.convert("RGBA")
                image = image.convert("RGB")
    except ImageTooLargeError:
        raise
    except bomb as exc:
        raise ImageTooLargeError(
            f"{path}: refusing the image, its header declares more than {MAX_IMAGE_PIXELS} "
            f"pixels ({exc})"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SourceFormatError(
            f"{path}: expected a readable JPEG, PNG or WebP image ({exc})"
        ) from None
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(resized, Image.Resampling.BICUBIC)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)  # (H, W, 3) → (3, H, W)


def read_image_folder(
    root: str | Path, size: int, *, labels_from_subfolders: bool = False
) -> Decoded:
    """Every image under `root`, as uint8 (N, 3, size, size).

    Unlabelled (labels all 0, no class names) unless `labels_from_subfolders`: then the class of
    an image is the top-level subfolder of `root` it lies in (nested deeper is fine)."""

    root = Path(root)
    if not root.is_dir():
        raise InputMissingError(f"{root}: expected a folder of JPEG, PNG or WebP images")
    paths = list_images(root)
    if not paths:
        raise InputMissingError(
            f"{root}: expected JPEG, PNG or WebP images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
            "in it or its subfolders, found none"
        )
    class_names: tuple[str, ...] = ()
    labels = np.zeros(len(paths), dtype=np.int64)
    if labels_from_subfolders:
        loose = [p for p in paths if p.parent == root]
        if loose:
            raise SourceFormatError(
                f"{loose[0]}: expected every image inside a class subfolder of {root} "
                f"(labels from subfolders), found {len(loose)} directly in it"
            )
        class_names = tuple(sorted({p.relative_to(root).parts[0] for p in paths}))
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[p.relative_to(root).parts[0]] for p in paths], dtype=np.int64)

    images = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    with progress(len(paths), f"read {root.name}", unit="img") as bar:
        for i, path in enumerate(paths):
            images[i] = load_image(path, size)
            bar.update(1)
    return Decoded(images, labels, class_names)
