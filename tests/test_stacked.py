"""Stacked MNIST: three seeded random digits in R, G, B, label 100·d_R + 10·d_G + d_B."""

import numpy as np
import pytest

from ugan.data.prepared import HELDOUT, TRAIN, PreparedData, load_prepared, save_prepared
from ugan.data.stacked import NUM_MODES, stack_digits, stacked_prepared
from ugan.evaluation.modes import stacked_mode_metrics


def _digits(count: int, offset: int = 0, size: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Grey digit images whose pixels all equal offset + 10·index_in_class + label, so a
    pixel identifies both the digit and the source image."""
    labels = np.arange(count) % 10
    values = offset + labels + 10 * (np.arange(count) // 10)
    images = np.broadcast_to(values[:, None, None, None], (count, 1, size, size))
    return images.astype(np.uint8), labels.astype(np.int64)


def test_label_is_the_digits_of_r_g_b_and_channels_are_source_digits():
    digits, labels = _digits(60)
    images, stacked = stack_digits(digits, labels, count=500, seed=0)
    assert images.dtype == np.uint8 and images.shape == (500, 3, 6, 6)
    assert stacked.dtype == np.int64 and stacked.min() >= 0 and stacked.max() < NUM_MODES
    channel_digits = images[:, :, 0, 0] % 10  # (500, 3): the label of each channel's source
    assert np.array_equal(stacked, channel_digits @ np.array([100, 10, 1]))
    # every channel is a whole source image, not a mix
    assert (images == images[:, :, :1, :1]).all()


def test_seeded():
    digits, labels = _digits(60)
    a = stack_digits(digits, labels, 200, seed=5)
    b = stack_digits(digits, labels, 200, seed=5)
    c = stack_digits(digits, labels, 200, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_channels_are_independent_and_cover_all_1000_modes():
    digits, labels = _digits(100)
    images, stacked = stack_digits(digits, labels, count=30_000, seed=1)
    counts = np.bincount(stacked, minlength=NUM_MODES)
    assert (counts > 0).all()  # 30 expected per mode
    for channel in range(3):
        freq = np.bincount(images[:, channel, 0, 0] % 10, minlength=10) / len(images)
        assert np.abs(freq - 0.1).max() < 0.01
    # the fake classifier reading each channel's pixel reproduces the labels exactly
    metrics = stacked_mode_metrics(images, lambda x: x[:, 0, 0, 0] % 10)
    assert metrics["modes_covered"] == 1000 and metrics["kl_uniform"] < 0.05


def test_prepared_stacked_keeps_train_and_heldout_digits_apart(tmp_path):
    train_digits, train_labels = _digits(50)  # pixel values 0..49
    held_digits, held_labels = _digits(30, offset=100)  # pixel values 100..129
    data = PreparedData(
        np.concatenate([train_digits, held_digits]),
        np.concatenate([train_labels, held_labels]),
        np.array([TRAIN] * 50 + [HELDOUT] * 30, np.uint8),
        {"source": "fake-digits", "num_classes": 10},
    )
    stacked = stacked_prepared(data, train_count=80, heldout_count=20, seed=3)
    assert stacked.num_classes == 1000 and stacked.shape == (3, 6, 6)
    assert stacked.metadata["source"] == "stacked(fake-digits)"
    train_images, train_modes = stacked.train
    held_images, held_modes = stacked.heldout
    assert len(train_images) == 80 and len(held_images) == 20
    assert train_images.max() < 100 and held_images.min() >= 100
    assert np.array_equal(held_modes, (held_images[:, :, 0, 0] % 10) @ np.array([100, 10, 1]))
    save_prepared(tmp_path / "stacked.npz", stacked)
    loaded = load_prepared(tmp_path / "stacked.npz")
    assert np.array_equal(loaded.images, stacked.images) and loaded.num_classes == 1000


def test_bad_inputs_are_refused_with_the_reason():
    digits, labels = _digits(20)
    with pytest.raises(ValueError, match=r"grey uint8 \(M, 1, H, W\)"):
        stack_digits(np.repeat(digits, 3, axis=1), labels, 5, seed=0)
    with pytest.raises(ValueError, match="20 digits but 19 labels"):
        stack_digits(digits, labels[:-1], 5, seed=0)
    with pytest.raises(ValueError, match="0..9"):
        stack_digits(digits, labels + 1, 5, seed=0)
    rgb = PreparedData(
        np.zeros((4, 3, 6, 6), np.uint8), np.zeros(4, np.int64), np.zeros(4, np.uint8), {}
    )
    with pytest.raises(ValueError, match="3 channel"):
        stacked_prepared(rgb, 2, 2, seed=0)


def test_real_mnist_digits_stack():
    from ugan.data.sources import mnist5k

    raw = mnist5k()
    images, stacked = stack_digits(raw.images, raw.labels, count=64, seed=0)
    assert images.shape == (64, 3, 28, 28)
    # each channel is one of the real digits, and its label is that digit's label
    flat = raw.images.reshape(len(raw.images), -1)
    for i in range(4):
        for channel, place in enumerate((100, 10, 1)):
            match = np.flatnonzero((flat == images[i, channel].reshape(-1)).all(axis=1))
            assert match.size >= 1
            assert raw.labels[match[0]] == stacked[i] // place % 10
