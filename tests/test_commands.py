"""README promises about `ugan validate`, `ugan run` and `prepare`, checked through the real
commands in a temporary DVC project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env.pop("UGAN_PIPELINE_ID", None)
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _ugan(*args: str) -> list[str]:
    return [sys.executable, "-m", "ugan.pipeline.cli", *args]


@pytest.fixture
def project(tmp_path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(cmd, path).returncode == 0
    return path


def _set(project: Path, **sections: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values}
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def test_ugan_validate_prints_the_resolved_runs(project):
    result = _run(_ugan("validate"), project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "params.yaml: ok"
    assert any(line.split()[0] == "dcgan-unbalanced" and "init=vae" in line for line in lines)


def test_ugan_validate_and_ugan_run_refuse_bad_params_before_dvc_starts(project):
    _set(project, gan={"loss": "vanilla"})
    for command in ("validate", "run"):
        result = _run(_ugan(command), project)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "gan.loss: got 'vanilla', allowed values are" in result.stderr
        assert "Traceback" not in result.stderr and "Running stage" not in result.stdout
    assert not (project / "dvc.lock").exists() and not (project / "data/prepared").exists()
    assert not (project / "mlflow.db").exists(), "no MLflow run for a pipeline that never ran"


def _write_images(folder: Path, start: int, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for index in range(start, start + count):
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")


@pytest.mark.slow
def test_a_grown_image_folder_reruns_prepare_with_the_new_images(project):
    _write_images(project / "images", 0, 60)
    _set(project, data={"source": "image-folder", "path": "images"})
    first = _run(["dvc", "repro", "prepare"], project)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    with np.load(project / "data/prepared/dataset.npz") as data:
        assert len(data["images"]) == 60
    assert "Running stage" not in _run(["dvc", "repro", "prepare"], project).stdout

    _write_images(project / "images", 60, 20)  # new images arrive
    status = _run(["dvc", "status", "prepare"], project)
    assert "modified:" in status.stdout and "images" in status.stdout, status.stdout
    second = _run(["dvc", "repro", "prepare"], project)
    assert "Running stage 'prepare'" in second.stdout, second.stdout[-2000:]
    with np.load(project / "data/prepared/dataset.npz") as data:
        assert len(data["images"]) == 80
