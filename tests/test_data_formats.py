"""Dataset sources in their real on-disk formats: files written byte for byte like the published
ones (gzip'd IDX, CIFAR-10 python pickles, folders of JPEG / PNG / WebP), then prepared; and the
corrupt, truncated and missing variants, which must name the file and what was expected."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ugan.config.load import parse_params
from ugan.config.schema import DataParams, ModelParams, SourceName
from ugan.core.errors import ConfigError
from ugan.data.formats import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    SourceFormatError,
    load_image,
    read_cifar10,
    read_image_folder,
    read_mnist_idx,
)
from ugan.data.prepared import load_prepared
from ugan.data.sources import DEFAULT_SOURCE_DIR, SOURCES, prepare
from ugan.nets.dcgan import Discriminator, Generator

ROOT = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)

# -- writers: the published formats ------------------------------------------------------------


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


# -- params and nets ---------------------------------------------------------------------------


def test_source_names_in_config_match_the_registry():
    assert set(SourceName.__args__) == set(SOURCES)
    assert DataParams().source == "mnist5k"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["data"]["path"] == DEFAULT_SOURCE_DIR and (ROOT / DEFAULT_SOURCE_DIR).is_dir()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"source": "cifar10"}, r"data\.path: .*source 'cifar10' reads files from disk: set "),
        ({"source": "mnist-idx", "path": ""}, r"data\.path: .*train-images-idx3-ubyte"),
        ({"source": "image-folder", "path": None}, r"data\.path: .*JPEG, PNG or WebP"),
        ({"labels_from_subfolders": True}, r"data\.labels_from_subfolders: .*image-folder"),
        ({"source": "lsun"}, r"data\.source: got 'lsun', allowed values are 'mnist5k'"),
    ],
)
def test_data_params_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_params({"data": raw})


def test_default_size_follows_the_source_unless_set():
    sizes = {s: parse_params({"data": {"source": s, "path": "x"}}).data.image_size for s in SOURCES}
    assert sizes == {"mnist5k": 28, "mnist-idx": 28, "cifar10": 32, "image-folder": 64}
    assert (
        parse_params({"data": {"source": "cifar10", "path": "x", "image_size": 64}}).data.image_size
        == 64
    )


@pytest.mark.parametrize(
    ("source", "size"), [("mnist-idx", 32), ("mnist-idx", 64), ("cifar10", 32)]
)
def test_nets_take_their_channels_from_the_prepared_data(tmp_path, source, size):
    write_mnist(tmp_path, n_train=20, n_test=10)
    write_cifar(tmp_path, n=10)
    data = prepare(source, size, 0.5, 0, path=tmp_path)
    cfg = ModelParams(latent_dim=8, base_channels=4).arch(size, data.shape[0], data.num_classes)
    real = torch.as_tensor(data.images[:4]).float().div(127.5).sub(1)
    fake = Generator(cfg)(torch.randn(4, 8))
    assert fake.shape == real.shape == (4, data.shape[0], size, size)
    assert Discriminator(cfg)(real).shape == (4,)


# -- the prepare stage -------------------------------------------------------------------------


def _run_prepare(workdir: Path, data: dict) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {**params["data"], **data}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, str(ROOT / "stages/prepare.py")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


@pytest.mark.slow
def test_prepare_stage_stops_cleanly_on_a_corrupt_source_and_leaves_nothing(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    blob = (tmp_path / "mnist/t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "mnist/t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    result = _run_prepare(tmp_path, {"source": "mnist-idx", "path": "mnist", "image_size": 32})
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: mnist/t10k-images-idx3-ubyte.gz: expected a complete gzip stream")
    )
    assert "Traceback" not in result.stderr
    prepared = tmp_path / "data/prepared"
    assert not prepared.exists() or not any(prepared.iterdir()), "nothing half-prepared"

    write_mnist(tmp_path / "mnist", n_train=20, n_test=10)  # repaired: the stage succeeds
    result = _run_prepare(tmp_path, {"source": "mnist-idx", "path": "mnist", "image_size": 32})
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in prepared.iterdir()) == ["dataset.npz", "summary.json"]
    assert load_prepared(prepared / "dataset.npz").images.shape == (30, 1, 32, 32)


# -- DVC: the source path is a dependency of prepare -------------------------------------------


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_reruns_prepare_when_the_source_grows(tmp_path):
    for name in ("src", "stages", "data/sources"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(tmp_path / "src"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    env.pop("UGAN_PIPELINE_ID", None)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        _sh(cmd, tmp_path, env)
    # The shipped params (mnist5k, data.path = data/sources): the dependency exists.
    status = _sh(["dvc", "status", "prepare"], tmp_path, env)
    assert re.search(r"modified:\s+data/sources", status)
    assert not re.search(r"deleted:\s+data/sources", status)

    write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["data"].update(source="mnist-idx", path="mnist")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert "Running stage 'prepare'" in _sh(["dvc", "repro", "prepare"], tmp_path, env)
    assert "up to date" in _sh(["dvc", "status", "prepare"], tmp_path, env)

    write_mnist(tmp_path / "mnist", n_train=40, n_test=10)  # the source grows
    status = _sh(["dvc", "status", "prepare"], tmp_path, env)
    assert "changed deps" in status and "modified:" in status and "mnist" in status
    assert "Running stage 'prepare'" in _sh(["dvc", "repro", "prepare"], tmp_path, env)
    assert load_prepared(tmp_path / "data/prepared/dataset.npz").images.shape[0] == 50
