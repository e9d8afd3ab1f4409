"""Unlabelled image folders (LSUN, CelebA exports): the feature network learns to predict image
rotations, FID / KID use its features, and no Inception Score is claimed.

The fast tests cover the rotation task, the evaluator and the refusals; the slow one runs the
whole pipeline under real DVC on a generated folder of unlabelled PNGs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from ugan.config.load import parse_params
from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import AccuracyTooLow, ConfigError, InputError
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData
from ugan.evaluation.features import ISC_UNAVAILABLE_ROTATION
from ugan.evaluation.fidelity import FidelityEvaluator
from ugan.nets.classifier import load_classifier
from ugan.training.classifier import objective_of, rotate_all, train_classifier

ROOT = Path(__file__).resolve().parents[1]


class _Tracker:
    def __init__(self):
        self.logged: list[dict] = []

    def log_metrics(self, metrics, step=None):
        self.logged.append(dict(metrics))


def _upright(n: int, size: int, seed: int) -> np.ndarray:
    """Grey images with an up: bright at the top, dark at the bottom, plus noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(230, 20, size)[None, :, None]  # (1, H, 1): rows darken downwards
    images = ramp + rng.normal(0, 25, (n, size, size))
    return np.clip(images, 0, 255).astype(np.uint8)[:, None]


def _unlabelled(n_train: int = 64, n_heldout: int = 32, size: int = 16) -> PreparedData:
    images = _upright(n_train + n_heldout, size, seed=0)
    split = np.array([TRAIN] * n_train + [HELDOUT] * n_heldout, dtype=np.uint8)
    labels = np.zeros(len(images), dtype=np.int64)
    return PreparedData(images, labels, split, {"source": "image-folder", "num_classes": 0})


def test_rotate_all_gives_every_quarter_turn_with_its_count():
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    turned, k = rotate_all(x)
    assert turned.shape == (8, 1, 3, 3) and k.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for i in range(8):
        assert torch.equal(turned[i], torch.rot90(x[i % 2], int(k[i]), dims=(1, 2)))
    with pytest.raises(InputError, match="square"):
        rotate_all(torch.zeros(1, 1, 3, 4))


def test_unlabelled_data_trains_rotation_prediction_and_records_it(tmp_path):
    data = _unlabelled()
    assert objective_of(data) == "rotation"
    params = parse_params({"classifier": {"steps": 40, "batch_size": 32}}).classifier
    tracker = _Tracker()
    model, metrics = train_classifier(params, data, tracker, torch.device("cpu"))
    assert metrics["objective"] == "rotation" and metrics["num_classes"] == 4
    assert metrics["chance"] == 0.25 and metrics["min_accuracy"] == 0.5  # min(0.98, 0.5)
    assert metrics["heldout_accuracy"] > 0.9, metrics  # an "up" this plain is easy to find
    path = tmp_path / "classifier.pt"
    save_checkpoint(path, model.to_payload(metrics=metrics))
    loaded = load_classifier(path)
    assert (loaded.objective, loaded.num_classes) == ("rotation", 4)
    assert load_checkpoint(path)["metrics"]["objective"] == "rotation"


def test_labelled_data_keeps_the_labels_objective(tiny_data):
    params = parse_params({"classifier": {"steps": 2, "min_accuracy": 0.0}}).classifier
    model, metrics = train_classifier(params, tiny_data, _Tracker(), torch.device("cpu"))
    assert metrics["objective"] == "labels" and metrics["num_classes"] == 10
    assert model.objective == "labels" and metrics["min_accuracy"] == 0.0


def test_rotation_symmetric_images_are_refused_with_the_reason():
    flat = _unlabelled()
    flat.images[:] = 128  # the same at every quarter turn: rotation cannot be predicted
    params = parse_params({"classifier": {"steps": 4, "batch_size": 16}}).classifier
    with pytest.raises(AccuracyTooLow, match="rotation accuracy .* below 0.5 .*quarter turn"):
        train_classifier(params, flat, _Tracker(), torch.device("cpu"))


def test_a_rotation_network_gives_fid_and_kid_but_no_inception_score(tmp_path):
    data = _unlabelled(size=16)
    params = parse_params({"classifier": {"steps": 10, "batch_size": 32}}).classifier
    model, metrics = train_classifier(params, data, _Tracker(), torch.device("cpu"))
    path = tmp_path / "classifier.pt"
    save_checkpoint(path, model.to_payload(metrics=metrics))
    reference = torch.as_tensor(data.heldout[0])
    evaluator = FidelityEvaluator(path, reference, kid_subset_size=10, cache_dir=tmp_path / "c")
    assert evaluator.isc_unavailable == ISC_UNAVAILABLE_ROTATION
    scores = evaluator(torch.as_tensor(data.train[0]))
    assert math.isnan(scores["isc_mean"]) and math.isnan(scores["isc_std"])
    assert all(math.isfinite(scores[k]) for k in ("fid", "kid_mean", "kid_std"))


UNLABELLED_FOLDER = {"source": "image-folder", "path": "/data/celeba"}


def test_what_needs_labels_refuses_an_unlabelled_folder_before_any_work():
    with pytest.raises(ConfigError, match="model.conditional: true needs class labels"):
        parse_params({"data": UNLABELLED_FOLDER, "model": {"conditional": True}})
    stacked = {"s": {"benchmark": "stacked-mnist", "variants": {"g": {"init": "random"}}}}
    with pytest.raises(ConfigError, match="modes.s: stacked-mnist stacks labelled MNIST"):
        parse_params({"data": UNLABELLED_FOLDER, "modes": stacked})
    labelled = {**UNLABELLED_FOLDER, "labels_from_subfolders": True}
    assert parse_params({"data": labelled, "model": {"conditional": True}}).model.conditional
    # And the nets refuse it too, whatever the params said about the source.
    with pytest.raises(ConfigError, match="needs labelled data"):
        parse_params({"model": {"conditional": True}}).model.arch(32, 3, 0)


def test_stacked_mnist_refuses_a_rotation_classifier(tmp_path):
    from ugan.modebench.benchmarks import BENCHMARKS, Inputs
    from ugan.nets.classifier import Classifier

    path = tmp_path / "classifier.pt"
    save_checkpoint(path, Classifier(3, 4, "rotation").to_payload())
    with pytest.raises(InputError, match="predicts image rotations, not digits"):
        BENCHMARKS["stacked-mnist"]._classify(Inputs(classifier=path))


# -- the whole pipeline on a folder of unlabelled PNGs ----------------------------------------


def write_shapes(folder: Path, count: int, size: int = 32, seed: int = 0) -> None:
    """`count` PNGs of a toy scene with an up: a sky lighter at the top, ground at the bottom,
    and a shape (box, triangle, disc) standing on it; no labels, no subfolders."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        sky = rng.integers(120, 256, 3)
        image = Image.new("RGB", (size, size))
        draw = ImageDraw.Draw(image)
        for y in range(size):
            shade = tuple(int(c * (1 - 0.5 * y / size)) for c in sky)
            draw.line([(0, y), (size, y)], fill=shade)
        ground = size - int(rng.integers(5, 10))
        draw.rectangle([0, ground, size, size], fill=tuple(int(c) for c in rng.integers(0, 90, 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        width, height = int(rng.integers(6, 14)), int(rng.integers(6, 14))
        left = int(rng.integers(0, size - width))
        box = [left, ground - height, left + width, ground]
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(box, fill=colour)
        elif kind == 1:
            draw.polygon(
                [(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], colour
            )
        else:
            draw.ellipse(box, fill=colour)
        image.save(folder / f"img_{i:04d}.png")


TINY = {
    "data": {"source": "image-folder", "path": "data/sources/shapes", "image_size": 32},
    "classifier": {"steps": 30},  # min_accuracy stays 0.98: the rotation gate is then 0.5
    "model": {"latent_dim": 16, "base_channels": 8},
    "vae": {"steps": 20, "sample_every": 10},
    "gan": {"steps": 8, "checkpoint_every": 4, "batch_size": 32, "num_sample_images": 16},
    "eval": {"num_samples": 200, "kid_subset_size": 50},
    "device": "cpu",
    "modes": {},
}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and value:
            out[key] = _merge(base.get(key, {}), value)
        else:
            out[key] = value
    return out


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.mark.slow
def test_the_pipeline_runs_end_to_end_on_an_unlabelled_image_folder(tmp_path):
    path = tmp_path / "project"
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    write_shapes(path / "data/sources/shapes", 300)
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(path / "src"),
        MLFLOW_TRACKING_URI=f"sqlite:///{path / 'mlflow.db'}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    env.pop("UGAN_PIPELINE_ID", None)
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        _sh(cmd, path, env)
    _sh(["git", "add", "-A"], path, env)
    _sh(["git", "commit", "-qm", "unlabelled project"], path, env)
    started = time.monotonic()
    _sh(["dvc", "repro"], path, env)
    print(f"dvc repro on 300 unlabelled PNGs: {time.monotonic() - started:.1f} s")

    classifier = json.loads((path / "metrics/classifier.json").read_text())
    print("classifier:", classifier)
    assert classifier["objective"] == "rotation" and classifier["num_classes"] == 4
    assert classifier["heldout_accuracy"] > 0.25 + 0.25  # well above chance (0.25)
    for key in ("dcgan", "dcgan-unbalanced"):
        metrics = json.loads((path / f"evaluation/{key}/metrics.json").read_text())
        info = json.loads((path / f"evaluation/{key}/info.json").read_text())
        assert info["feature_network"]["objective"] == "rotation"
        assert info["inception_score"] == {
            "available": False,
            "reason": ISC_UNAVAILABLE_ROTATION,
        }
        assert math.isfinite(metrics["final"]["fid"]) and math.isfinite(
            metrics["final"]["kid_mean"]
        )
        assert "isc_mean" not in metrics["final"] and "isc_mean" not in metrics["floor"]
        assert math.isfinite(metrics["floor"]["fid"])
    report = (path / "reports/report.md").read_text()
    assert f"Inception Score (IS): {ISC_UNAVAILABLE_ROTATION}." in report
    assert re.search(r"\| 2\. IS better early +\|.*\| \*\*not measured\*\* \|", report)
    assert re.search(r"\| dcgan +\| +8 \|.*\| +n/a \|", report)  # the final numbers
    summary = json.loads((path / "reports/report.json").read_text())
    assert summary["runs"]["dcgan"]["isc_unavailable"] == ISC_UNAVAILABLE_ROTATION
    assert (path / "reports/is.png").stat().st_size > 1000
