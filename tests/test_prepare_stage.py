"""Data params and the prepare stage: source names and sizes validated with the key named, nets
sized from the prepared data, the stage leaving nothing half-written on a corrupt source, and
DVC rerunning `prepare` when the source's files change."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from format_writers import write_cifar, write_mnist

from ugan.config.base import SourceName
from ugan.config.load import parse_params
from ugan.config.schema import DataParams, ModelParams
from ugan.core.errors import ConfigError
from ugan.data.prepared import load_prepared
from ugan.data.sources import DEFAULT_SOURCE_DIR, SOURCES, prepare
from ugan.nets.dcgan import Discriminator, Generator

ROOT = Path(__file__).resolve().parents[1]

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
