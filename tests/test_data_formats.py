"""Dataset sources in their real on-disk formats: files written byte for byte like the published
ones (gzip'd IDX, CIFAR-10 python pickles, folders of JPEG / PNG / WebP), then prepared; and the
corrupt, truncated and missing variants, which must name the file and what was expected."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from format_writers import CLASSES, cifar_batch, idx_bytes, write_cifar, write_image, write_mnist
from PIL import Image

from ugan.config.load import parse_params
from ugan.data.formats import (
    IDX_LABELS_MAGIC,
    SourceFormatError,
    load_image,
    read_cifar10,
    read_image_folder,
    read_mnist_idx,
)
from ugan.data.sources import prepare

# -- MNIST IDX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_is_read_exactly(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    decoded = read_mnist_idx(tmp_path)
    expected = np.concatenate([arrays["train"][0], arrays["t10k"][0]])
    assert decoded.images.shape == (40, 1, 28, 28) and decoded.images.dtype == np.uint8
    np.testing.assert_array_equal(decoded.images[:, 0], expected)
    np.testing.assert_array_equal(
        decoded.labels, np.concatenate([arrays["train"][1], arrays["t10k"][1]])
    )
    assert decoded.class_names == tuple("0123456789")


@pytest.mark.parametrize("size", [28, 32, 64])
def test_mnist_idx_prepares_at_every_size(tmp_path, size):
    write_mnist(tmp_path / "mnist", n_train=40, n_test=10)
    data = prepare("mnist-idx", size, 0.2, 0, path=tmp_path / "mnist")
    assert data.images.shape == (50, 1, size, size)
    assert data.metadata["num_classes"] == 10 and data.metadata["channels"] == 1
    assert data.metadata["count"] == {"train": 40, "heldout": 10}
    assert data.metadata["path"] == str(tmp_path / "mnist")


def _corrupt(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (  # the labels file under the images name
            lambda f: shutil.copy(
                f / "train-labels-idx1-ubyte.gz", f / "train-images-idx3-ubyte.gz"
            ),
            r"train-images-idx3-ubyte\.gz: expected IDX magic 2051, got 2049",
        ),
        (  # a truncated payload inside an intact gzip stream
            lambda f: _corrupt(
                f,
                "train-images-idx3-ubyte.gz",
                gzip.compress(
                    gzip.decompress((f / "train-images-idx3-ubyte.gz").read_bytes())[:-5]
                ),
            ),
            r"train-images-idx3-ubyte\.gz: expected 23520 bytes of data for dimensions "
            r"\(30, 28, 28\), found 23515 \(truncated\)",
        ),
        (  # a truncated gzip stream
            lambda f: _corrupt(
                f, "t10k-images-idx3-ubyte.gz", (f / "t10k-images-idx3-ubyte.gz").read_bytes()[:40]
            ),
            r"t10k-images-idx3-ubyte\.gz: expected a complete gzip stream",
        ),
        (  # not gzip at all
            lambda f: _corrupt(f, "t10k-labels-idx1-ubyte.gz", b"<html>404</html>"),
            r"t10k-labels-idx1-ubyte\.gz: expected a complete gzip stream",
        ),
        (  # a header cut short
            lambda f: _corrupt(f, "t10k-labels-idx1-ubyte.gz", gzip.compress(b"\x00\x00\x08")),
            r"t10k-labels-idx1-ubyte\.gz: expected an IDX header \(magic 2049\), got 3 bytes",
        ),
        (
            lambda f: (f / "t10k-labels-idx1-ubyte.gz").unlink(),
            r"t10k-labels-idx1-ubyte: expected the MNIST IDX file t10k-labels-idx1-ubyte "
            r"\(or t10k-labels-idx1-ubyte\.gz\)",
        ),
        (  # fewer labels than images
            lambda f: _corrupt(
                f,
                "train-labels-idx1-ubyte.gz",
                gzip.compress(idx_bytes(np.zeros(29, np.uint8), IDX_LABELS_MAGIC)),
            ),
            r"train-labels-idx1-ubyte\.gz: expected 30 labels .* got 29",
        ),
        (
            lambda f: _corrupt(
                f,
                "train-labels-idx1-ubyte.gz",
                gzip.compress(idx_bytes(np.full(30, 12, np.uint8), IDX_LABELS_MAGIC)),
            ),
            r"train-labels-idx1-ubyte\.gz: expected digit labels 0\.\.9, got 12",
        ),
    ],
)
def test_broken_idx_files_are_named_with_what_was_expected(tmp_path, damage, message):
    write_mnist(tmp_path)
    damage(tmp_path)
    with pytest.raises((SourceFormatError, FileNotFoundError), match=message) as info:
        read_mnist_idx(tmp_path)
    assert isinstance(info.value, (ValueError, FileNotFoundError))  # printed cleanly by stages


# -- CIFAR-10 python pickles -------------------------------------------------------------------


@pytest.mark.parametrize("style", ["py2", "bytes", "latin1"])
def test_cifar_pickles_are_read_exactly(tmp_path, style):
    batches = write_cifar(tmp_path, style=style)
    if style == "py2":  # the hand-written stream is what the stock unpickler reads, too
        blob = (tmp_path / "cifar-10-batches-py/data_batch_1").read_bytes()
        stock = pickle.loads(blob, encoding="bytes")
        np.testing.assert_array_equal(stock[b"data"], batches["data_batch_1"]["data"])
    decoded = read_cifar10(tmp_path)
    order = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    expected = np.concatenate([batches[name]["data"] for name in order])
    assert decoded.images.shape == (48, 3, 32, 32)
    # A row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    np.testing.assert_array_equal(decoded.images[:, 0].reshape(48, -1), expected[:, :1024])
    np.testing.assert_array_equal(decoded.images[:, 2].reshape(48, -1), expected[:, 2048:])
    labels = np.concatenate([batches[name]["labels"] for name in order])
    np.testing.assert_array_equal(decoded.labels, labels)
    assert decoded.class_names == tuple(CLASSES)
    # The folder itself works as the path too.
    assert read_cifar10(tmp_path / "cifar-10-batches-py").images.shape == (48, 3, 32, 32)


def test_cifar_prepares_rgb_with_class_names(tmp_path):
    write_cifar(tmp_path, n=10)
    data = prepare("cifar10", 32, 0.25, 0, path=tmp_path)
    assert data.images.shape == (60, 3, 32, 32)
    assert data.metadata["class_names"] == CLASSES and data.metadata["channels"] == 3


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "code-ran"
    batch = cifar_batch("evil", 8) | {"labels": _Payload(str(marker))}
    (tmp_path / "cifar-10-batches-py/data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(
        SourceFormatError, match=r"data_batch_3: .*refusing to load global os\.makedirs"
    ):
        read_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: (f / "test_batch").write_bytes((f / "test_batch").read_bytes()[:500]),
            r"test_batch: expected a CIFAR-10 python pickle, the file is truncated or corrupt",
        ),
        (lambda f: (f / "test_batch").unlink(), r"test_batch: expected a CIFAR-10 python pickle"),
        (
            lambda f: (f / "batches.meta").unlink(),
            r"batches\.meta: expected a CIFAR-10 python pickle",
        ),
        (
            lambda f: (f / "data_batch_2").write_bytes(
                pickle.dumps({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}, 2)
            ),
            r"data_batch_2: expected 'data' of shape \(N, 3072\), got \(4, 1024\)",
        ),
        (
            lambda f: (f / "data_batch_2").write_bytes(pickle.dumps({b"data": b"x"}, 2)),
            r"data_batch_2: expected a dict with keys 'data' and 'labels', missing \['labels'\]",
        ),
        (
            lambda f: (f / "data_batch_5").write_bytes(pickle.dumps([1, 2], 2)),
            r"data_batch_5: expected a pickled dict, got list",
        ),
    ],
)
def test_broken_cifar_files_are_named(tmp_path, damage, message):
    write_cifar(tmp_path)
    damage(tmp_path / "cifar-10-batches-py")
    with pytest.raises((SourceFormatError, FileNotFoundError), match=message):
        read_cifar10(tmp_path)


def test_an_unextracted_cifar_archive_says_how_to_extract_it(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py: .*tar xzf"):
        read_cifar10(tmp_path)


# -- image folders -----------------------------------------------------------------------------


def test_image_folder_resizes_the_shorter_side_and_centre_crops(tmp_path):
    # 128×64: a red quarter on each side of a green half. Shorter side 64 → 32, so the image
    # becomes 64×32 and the centre crop keeps the green half only.
    pixels = np.zeros((64, 128, 3), np.uint8)
    pixels[:, :32, 0] = pixels[:, 96:, 0] = 255
    pixels[:, 32:96, 1] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = load_image(tmp_path / "wide.png", 32)
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8
    assert image[1, :, 2:-2].min() >= 250 and image[0, :, 2:-2].max() <= 5
    # Upscaling works too: a 20×30 image becomes 32×32.
    write_image(tmp_path / "small.jpg", (20, 30), "JPEG")
    assert load_image(tmp_path / "small.jpg", 32).shape == (3, 32, 32)


def test_image_folder_reads_nested_mixed_formats_as_rgb(tmp_path):
    write_image(tmp_path / "a/1.jpg", (90, 70), "JPEG")
    write_image(tmp_path / "a/deep/er/2.PNG", (64, 80), "PNG")
    write_image(tmp_path / "b/3.webp", (100, 100), "WEBP")
    write_image(tmp_path / "b/gray.png", (70, 70), "PNG", mode="L", color=128)
    write_image(tmp_path / "b/alpha.png", (66, 66), "PNG", mode="RGBA")
    write_image(tmp_path / "b/palette.png", (66, 66), "PNG", mode="P")
    (tmp_path / "notes.txt").write_text("not an image")
    write_image(tmp_path / ".hidden/4.jpg", (64, 64), "JPEG")  # skipped
    (tmp_path / "b/._3.webp").write_bytes(b"AppleDouble junk")  # skipped, never decoded

    decoded = read_image_folder(tmp_path, 64)
    assert decoded.images.shape == (6, 3, 64, 64)
    assert decoded.class_names == () and not decoded.labels.any()
    gray = decoded.images[4]  # sorted: a/1, a/deep/er/2, b/3, b/alpha, b/gray, b/palette
    assert (gray == 128).all()

    labelled = read_image_folder(tmp_path, 32, labels_from_subfolders=True)
    assert labelled.class_names == ("a", "b")
    np.testing.assert_array_equal(labelled.labels, [0, 0, 1, 1, 1, 1])


def test_image_folder_prepares_at_64_by_default(tmp_path):
    for i in range(50):
        write_image(tmp_path / f"bedroom/{i:03d}.jpg", (80 + i, 60), "JPEG")
    params = parse_params({"data": {"source": "image-folder", "path": str(tmp_path / "bedroom")}})
    assert params.data.image_size == 64
    data = prepare(
        params.data.source,
        params.data.image_size,
        params.data.heldout_fraction,
        params.data.seed,
        path=params.data.path,
    )
    assert data.images.shape == (50, 3, 64, 64)
    assert data.num_classes == 0 and data.metadata["count"] == {"train": 40, "heldout": 10}


def test_broken_image_folders_are_named(tmp_path):
    write_image(tmp_path / "ok.png", (64, 64), "PNG")
    write_image(tmp_path / "cut.jpg", (64, 64), "JPEG")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:300])
    with pytest.raises(SourceFormatError, match=r"cut\.jpg: expected a readable JPEG, PNG or WebP"):
        read_image_folder(tmp_path, 32)
    (tmp_path / "cut.jpg").write_bytes(b"GIF89a not really")
    with pytest.raises(SourceFormatError, match=r"cut\.jpg: expected a readable"):
        read_image_folder(tmp_path, 32)
    (tmp_path / "cut.jpg").unlink()
    with pytest.raises(SourceFormatError, match=r"ok\.png: expected every image inside a class"):
        read_image_folder(tmp_path, 32, labels_from_subfolders=True)
    with pytest.raises(FileNotFoundError, match=r"empty: expected JPEG, PNG or WebP images"):
        (tmp_path / "empty").mkdir()
        read_image_folder(tmp_path / "empty", 32)
    with pytest.raises(FileNotFoundError, match=r"nowhere: expected a folder of JPEG"):
        read_image_folder(tmp_path / "nowhere", 32)
