"""Hostile and degenerate inputs to `prepare`, built for real in their published formats: a gzip
bomb and a lying IDX header, a PNG whose header claims 30000×30000 pixels, CIFAR pickles that
declare giant numpy arrays, 16-bit PNGs, and sources too small to split. Each must be refused
with one line naming the file (or read correctly), without exhausting memory."""

from __future__ import annotations

import codecs
import gzip
import pickle
import runpy
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from format_writers import cifar_batch, idx_bytes, write_cifar, write_image, write_mnist
from PIL import Image

from ugan.core.errors import UserError
from ugan.data import formats
from ugan.data.formats import (
    IDX_IMAGES_MAGIC,
    SourceFormatError,
    load_image,
    read_cifar10,
    read_image_folder,
    read_mnist_idx,
)
from ugan.data.prepared import load_prepared
from ugan.data.sources import MIN_PER_SPLIT, prepare
from ugan.evaluation.fidelity import MIN_SAMPLES

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _peak_bytes(call) -> tuple[BaseException | None, int]:
    """(the exception `call()` raised, the peak of memory traced while it ran)."""
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


# -- IDX: a gzip bomb, a lying header ----------------------------------------------------------


def _gzip_bomb(header: bytes, expands_to: int) -> bytes:
    """`header`, then `expands_to` zero bytes, as a multi-member gzip stream (what gzip / zcat /
    Python read as one file): each 1 MiB member of zeros compresses to about 1 KiB."""
    member = gzip.compress(bytes(MiB), compresslevel=9)
    assert len(gzip.decompress(member)) == MiB
    return gzip.compress(header) + member * (expands_to // MiB)


def _idx_header(*dims: int) -> bytes:
    return struct.pack(">i", IDX_IMAGES_MAGIC) + b"".join(struct.pack(">I", d) for d in dims)


def test_a_gzip_bomb_is_refused_after_the_size_its_header_declares(tmp_path):
    write_mnist(tmp_path)
    bomb = _gzip_bomb(_idx_header(30, 28, 28), expands_to=formats.MAX_IDX_BYTES + 64 * MiB)
    assert len(bomb) < 4 * MiB  # a few MB on disk, more than MAX_IDX_BYTES decompressed
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bomb)

    error, peak = _peak_bytes(lambda: read_mnist_idx(tmp_path))
    assert isinstance(error, SourceFormatError) and isinstance(error, UserError)
    assert str(error).startswith(f"{tmp_path / 'train-images-idx3-ubyte.gz'}: expected 23520 bytes")
    assert "found more (trailing bytes; reading stopped at 23520 bytes)" in str(error)
    assert peak < 8 * MiB, f"held {peak} bytes reading a gzip bomb"


def test_an_idx_header_that_declares_too_much_is_refused_before_reading(tmp_path):
    write_mnist(tmp_path)
    declared = (1 << 21, 28, 28)  # 1.6 GB of pixels, over MAX_IDX_BYTES
    bomb = _gzip_bomb(_idx_header(*declared), expands_to=formats.MAX_IDX_BYTES + 64 * MiB)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(bomb)
    error, peak = _peak_bytes(lambda: read_mnist_idx(tmp_path))
    assert isinstance(error, SourceFormatError), error
    assert str(error).startswith(
        f"{tmp_path / 't10k-images-idx3-ubyte.gz'}: the header declares dimensions "
        f"(2097152, 28, 28), 1644167168 bytes of data; refusing more than {formats.MAX_IDX_BYTES}"
    )
    assert peak < 8 * MiB

    # The same header in a plain (not gzip'd) file: refused from the header alone.
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_header(*declared) + bytes(100))
    with pytest.raises(SourceFormatError, match=r"t10k-images-idx3-ubyte: the header declares"):
        read_mnist_idx(tmp_path)


# -- images: a decompression bomb --------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png(path: Path, side: int = 30000) -> None:
    """A complete, valid 1-bit grayscale PNG of side×side black pixels (about 110 KB): every
    row is a filter byte and side/8 zero bytes, deflated as one stream."""
    row = bytes(1 + (side + 7) // 8)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    png += _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    path.write_bytes(png)


@pytest.mark.parametrize("pil_limit", ["default", "disabled"])
def test_an_image_claiming_30000x30000_pixels_is_refused_by_name(tmp_path, monkeypatch, pil_limit):
    if pil_limit == "disabled":  # another library switched PIL's own check off
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    write_image(tmp_path / "ok.png", (40, 40), "PNG")
    _huge_png(tmp_path / "huge.png")
    assert (tmp_path / "huge.png").stat().st_size < MiB
    error, peak = _peak_bytes(lambda: read_image_folder(tmp_path, 32))
    assert isinstance(error, formats.ImageTooLargeError) and isinstance(error, UserError), error
    assert str(error).startswith(
        f"{tmp_path / 'huge.png'}: refusing the image, its header declares"
    )
    assert peak < 16 * MiB


# -- CIFAR-10 pickles that declare giant arrays ------------------------------------------------

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]


class _Reduce:
    """Pickles as `call(*args)` (then `.__setstate__(state)` when given)."""

    def __init__(self, call, args, state=None):
        self.reduced = (call, args) if state is None else (call, args, state)

    def __reduce__(self):
        return self.reduced


HOSTILE_ARRAYS = {
    "reconstruct-2**44": _Reduce(_RECONSTRUCT, (np.ndarray, (1 << 44,), b"b")),
    "ndarray-2**44": _Reduce(np.ndarray, ((1 << 22, 1 << 22), "u1")),
    "reconstruct-50000x3072": _Reduce(_RECONSTRUCT, (np.ndarray, (50000, 3072), b"B")),
    "object-array-setstate": _Reduce(
        _RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (1 << 40,), np.dtype(object), False, [])
    ),
    "1GB-dtype": _Reduce(np.dtype, ("V1000000000",)),
}


@pytest.mark.parametrize("name", HOSTILE_ARRAYS)
def test_a_cifar_pickle_declaring_a_giant_array_is_refused_before_allocating(tmp_path, name):
    write_cifar(tmp_path)
    batch = cifar_batch("evil", 8) | {"data": HOSTILE_ARRAYS[name]}
    path = tmp_path / "cifar-10-batches-py/data_batch_2"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    error, peak = _peak_bytes(lambda: read_cifar10(tmp_path))
    assert isinstance(error, SourceFormatError) and isinstance(error, UserError), error
    assert str(error).startswith(f"{path}: expected a CIFAR-10 python pickle: refusing ")
    assert "of Python objects" in str(error) or "bytes allowed (the file's size)" in str(error)
    assert peak < 8 * MiB, f"allocated {peak} bytes before refusing"


def test_bytes_through_another_codec_are_refused(tmp_path):
    """`_codecs.encode` is allowed for Python 3's protocol-2 bytes (latin1) only: chained `hex`
    encodings would double a string at each call."""
    write_cifar(tmp_path)
    blob = _Reduce(codecs.encode, ("ab", "hex"))
    path = tmp_path / "cifar-10-batches-py/test_batch"
    path.write_bytes(pickle.dumps(cifar_batch("evil", 8) | {"batch_label": blob}, protocol=2))
    with pytest.raises(
        SourceFormatError, match=r"test_batch: .*refusing _codecs\.encode\(str, 'hex'"
    ):
        read_cifar10(tmp_path)


# -- 16-bit PNGs -------------------------------------------------------------------------------


def _write_16bit(path: Path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint16)).save(path, "PNG")
    assert path.read_bytes()[24] == 16, "IHDR bit depth 16"


def _to_8bit(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def test_a_16bit_png_is_scaled_not_clipped(tmp_path):
    gradient = np.arange(32 * 32, dtype=np.int64).reshape(32, 32) * 64  # 0 … 65472
    _write_16bit(tmp_path / "g.png", gradient)
    image = load_image(tmp_path / "g.png", 32)
    assert image.shape == (3, 32, 32)
    for channel in image:
        np.testing.assert_array_equal(channel, _to_8bit(gradient))
    assert (image == 255).mean() < 0.01  # PIL's convert("RGB") made 99.6 % of them 255


def test_a_folder_of_16bit_pngs_prepares_with_the_right_pixels(tmp_path):
    rng = np.random.default_rng(3)
    expected = []
    for i in range(20):
        values = rng.integers(0, 65536, (32, 32))
        values[0, 0], values[0, 1] = 0, 65535
        _write_16bit(tmp_path / f"{i:02d}.png", values)
        expected.append(np.repeat(_to_8bit(values)[None], 3, axis=0))
    data = prepare("image-folder", 32, 0.5, 0, path=tmp_path)
    assert data.images.shape == (20, 3, 32, 32)
    assert sorted(x.tobytes() for x in data.images) == sorted(x.tobytes() for x in expected)


# -- too little data: refused by the prepare stage, with the numbers ---------------------------


def test_the_minimum_split_is_what_evaluation_needs():
    assert MIN_PER_SPLIT == MIN_SAMPLES


def _prepare_stage(workdir: Path, monkeypatch, capsys, data: dict) -> tuple[int, str]:
    """Run stages/prepare.py's main in `workdir` (params.yaml there), as DVC would."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {**params["data"], **data}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(workdir)
    monkeypatch.setattr("sys.argv", ["stages/prepare.py"])
    main = runpy.run_path(str(ROOT / "stages/prepare.py"), run_name="prepare_stage")["main"]
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err.strip()


def _write_one_image(folder: Path) -> None:
    write_image(folder / "only.png", (64, 64), "PNG")


def _write_empty_idx(folder: Path) -> None:
    write_mnist(folder, n_train=0, n_test=0)


@pytest.mark.parametrize(
    ("case", "data", "message"),
    [
        (
            "heldout_fraction",
            {"source": "mnist5k", "path": "src", "heldout_fraction": 0.9999},
            "error: data.source=mnist5k: the train split has 0 image(s) and the held-out split "
            "5000; need at least 10 of each (data.heldout_fraction=0.9999, 5000 images in all)",
        ),
        (
            "empty IDX files",
            {"source": "mnist-idx", "path": "src"},
            "error: src: the train split has 0 image(s) and the held-out split 0; need at least "
            "10 of each (data.heldout_fraction=0.2, 0 images in all)",
        ),
        (
            "one image",
            {"source": "image-folder", "path": "src"},
            "error: src: the train split has 1 image(s) and the held-out split 0; need at least "
            "10 of each (data.heldout_fraction=0.2, 1 images in all)",
        ),
    ],
)
def test_prepare_refuses_a_split_a_later_stage_could_not_use(
    tmp_path, monkeypatch, capsys, case, data, message
):
    {"empty IDX files": _write_empty_idx, "one image": _write_one_image}.get(
        case, lambda folder: folder.mkdir()
    )(tmp_path / "src")
    code, stderr = _prepare_stage(tmp_path, monkeypatch, capsys, data)
    assert code == 2 and stderr.splitlines()[-1] == message, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "data/prepared/dataset.npz").exists()


def test_prepare_accepts_the_smallest_usable_split(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "src", n_train=10, n_test=10)  # 2 per class: half held out
    code, stderr = _prepare_stage(
        tmp_path,
        monkeypatch,
        capsys,
        {"source": "mnist-idx", "path": "src", "heldout_fraction": 0.5},
    )
    assert code == 0, stderr
    prepared = load_prepared(tmp_path / "data/prepared/dataset.npz")
    assert prepared.metadata["count"] == {"train": 10, "heldout": 10}


def test_an_idx_file_with_zero_images_beside_real_ones_still_prepares(tmp_path):
    """Zero images in one file is not an error by itself: the split decides."""
    write_mnist(tmp_path, n_train=40, n_test=10)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((0, 28, 28)), IDX_IMAGES_MAGIC))
    )
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(0), 2049))
    )
    assert prepare("mnist-idx", 28, 0.25, 0, path=tmp_path).metadata["count"] == {
        "train": 30,
        "heldout": 10,
    }
