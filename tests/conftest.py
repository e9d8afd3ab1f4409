"""Shared fixtures: tiny architectures and a tiny prepared dataset, so tests run in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.paths import DAE_PATH
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData
from ugan.models.dae import DenoisingAE
from ugan.nets.arch import ArchConfig


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


@pytest.fixture
def dae_file(tiny_arch, tmp_path, monkeypatch) -> Path:
    """models/dae.pt in a fresh project folder (the cwd), from an untrained DAE."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    dae = DenoisingAE(tiny_arch)
    save_checkpoint(DAE_PATH, {"encoder": dae.encoder.state_dict(), "arch": tiny_arch.to_dict()})
    return tmp_path / DAE_PATH


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Every test logs to its own sqlite store, never to the project's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


# -- parallel runs (`make test` runs pytest-xdist workers with `--dist loadscope`) ---------------

# xdist's `loadscope` keeps a test module's tests on one worker, so a module-scoped fixture (one
# real `dvc repro`) runs once. (`loadgroup` does not group with pytest 9: xdist 3.8 renames
# `item._nodeid`, which pytest 9 no longer reads, so every test was sent alone and module
# fixtures ran on both workers.) The slowest modules are collected first and the Makefile passes
# `--no-loadscope-reorder`, so no worker starts a long module last.
SLOW_FIRST = ("test_pipeline", "test_flows", "test_cluster", "test_first_look", "test_unlabelled")

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Stage processes of parallel workers share the cores: size torch's threads for that.
    os.environ.setdefault("UGAN_JOBS", os.environ["PYTEST_XDIST_WORKER_COUNT"])


def _module(item: pytest.Item) -> str:
    return item.module.__name__.rpartition(".")[2] if item.module else item.nodeid


def pytest_collection_modifyitems(config, items):
    rank = {module: i for i, module in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item), len(rank)))  # stable: order kept within
