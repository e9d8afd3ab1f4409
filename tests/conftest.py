"""Shared fixtures: tiny architectures and a tiny prepared dataset, so tests run in seconds."""

from __future__ import annotations

import numpy as np
import pytest

from ugan.data.prepared import HELDOUT, TRAIN, PreparedData
from ugan.nets.dcgan import ArchConfig


@pytest.fixture
def tiny_arch() -> ArchConfig:
    return ArchConfig(image_size=28, channels=1, latent_dim=8, base_channels=4)


@pytest.fixture
def tiny_data() -> PreparedData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(96, 1, 28, 28), dtype=np.uint8)
    labels = np.arange(96) % 10
    split = np.where(np.arange(96) < 64, TRAIN, HELDOUT).astype(np.uint8)
    return PreparedData(images, labels, split, {"source": "test", "num_classes": 10})


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Every test logs to its own sqlite store, never to the project's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
