"""The tiny DVC project the pipeline tests run: this checkout's code and stages in a temporary
git repo, on params small enough that a full `dvc repro` takes about two minutes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "classifier": {"steps": 60, "min_accuracy": 0.0},
    "model": {"latent_dim": 16, "base_channels": 8},
    "vae": {"steps": 20, "sample_every": 10},
    "dae": {"steps": 10, "sample_every": 5},
    "gan": {"steps": 12, "checkpoint_every": 4, "batch_size": 32, "num_sample_images": 16},
    "eval": {"num_samples": 200, "kid_subset_size": 100},
    "tracking": {"log_models": True},
    "device": "cpu",
    # One tiny mode-coverage benchmark: a VAE-initialised GAN and RFGAN (own DAE), 2 seeds.
    "modes": {
        "ring": {
            "benchmark": "ring8",
            "seeds": [0, 1],
            "steps": 20,
            "checkpoint_every": 10,  # scored at 10 and 20: a trajectory
            "batch_size": 32,
            "pretrain_steps": 10,
            "num_samples": 200,
            "variants": {
                "gan-unbalanced": {"init": "vae"},
                "rfgan": {"init": "random", "method": "rfgan"},
            },
        }
    },
}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _sh(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


class Project:
    def __init__(self, path: Path, env: dict):
        self.path, self.env = path, env

    def repro(self) -> str:
        return _sh(["dvc", "repro"], self.path, self.env)

    def set_params(self, override: dict) -> None:
        params = yaml.safe_load((self.path / "params.yaml").read_text())
        (self.path / "params.yaml").write_text(yaml.safe_dump(_merge(params, override)))


def new_project(path: Path) -> Project:
    """A git + DVC repo at `path` with a copy of this checkout's code and the TINY params."""
    for name in ("src", "stages", "data/sources"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(path / "src"),  # the copy's code runs, the copy's code is hashed
        MLFLOW_TRACKING_URI=f"sqlite:///{path / 'mlflow.db'}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    env.pop("UGAN_PIPELINE_ID", None)
    _sh(["git", "init", "-q"], path, env)
    _sh(["dvc", "init", "-q"], path, env)
    _sh(["dvc", "config", "core.analytics", "false"], path, env)
    _sh(["git", "add", "-A"], path, env)
    _sh(["git", "commit", "-qm", "tiny project"], path, env)
    return Project(path, env)
