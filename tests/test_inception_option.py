"""`eval.feature_extractor: inception`: torch-fidelity's own InceptionV3 from a local weights file,
never a download. The real weights cannot be fetched here, so the tests use files of the exact
layout torch-fidelity loads (a randomly initialised InceptionV3 state dict) and files that are
not weights at all, and check that no download is ever attempted."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

from ugan.config.load import parse_params
from ugan.config.schema import EvalParams, ResolvedRun
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import ConfigError
from ugan.core.paths import RunLayout
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData
from ugan.evaluation.evaluate import evaluate_run
from ugan.evaluation.features import (
    INCEPTION_NAME,
    FidelityInputError,
    FidelityWeightsError,
)
from ugan.evaluation.fidelity import FidelityEvaluator
from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import Generator
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun

HELP = r"pt_inception-2015-12-05-6726825d\.pth.*set eval\.weights_path"


@pytest.fixture(scope="module")
def inception_state() -> dict[str, torch.Tensor]:
    """Every key and shape torch-fidelity's InceptionV3 loads, with random (Kaiming) weights."""
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:  # build the net without any weights file
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None)
        net = tf_inception.FeatureExtractorInceptionV3(INCEPTION_NAME, ["2048"])
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net.state_dict()


@pytest.fixture(autouse=True)
def downloads(monkeypatch) -> list:
    """Every download torch-fidelity or torch.hub would start is recorded and refused."""
    attempts: list = []

    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise AssertionError(f"download attempted: {url}")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    yield attempts
    assert attempts == [], "no weights may be downloaded"


def images(n: int, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)


def test_params_ask_for_the_weights_file_and_keep_the_classifier_default():
    assert parse_params({}).eval.feature_extractor == "classifier"
    with pytest.raises(ConfigError, match=r"eval: .*eval\.weights_path is not set\. .*" + HELP):
        parse_params({"eval": {"feature_extractor": "inception"}})
    with pytest.raises(ConfigError, match=r"eval\.feature_extractor: got 'clip', allowed values"):
        parse_params({"eval": {"feature_extractor": "clip"}})
    chosen = parse_params({"eval": {"feature_extractor": "inception", "weights_path": "w.pth"}})
    assert (chosen.eval.feature_extractor, chosen.eval.weights_path) == ("inception", "w.pth")


def test_a_missing_weights_file_says_where_to_get_it(tmp_path, downloads):
    with pytest.raises(FileNotFoundError, match=r"eval\.weights_path .*nope\.pth does not exist"):
        FidelityEvaluator(tmp_path / "nope.pth", images(10), feature_extractor="inception")
    with pytest.raises(FileNotFoundError, match=r"github\.com/mseitzer/pytorch-fid/releases.*"):
        FidelityEvaluator(tmp_path / "nope.pth", images(10), feature_extractor="inception")


def test_a_file_that_is_not_inception_weights_reaches_torch_fidelity_and_is_named(tmp_path):
    # A valid torch file of the wrong content: only torch-fidelity's strict load_state_dict of
    # its InceptionV3 can reject it, which proves the path was handed to that extractor.
    path = tmp_path / "tiny.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(FidelityWeightsError) as info:
        FidelityEvaluator(path, images(10), feature_extractor="inception")
    message = str(info.value)
    assert (
        f"eval.weights_path {path}: torch-fidelity's inception-v3-compat cannot load it" in message
    )
    assert "FeatureExtractorInceptionV3" in message and "Missing key(s)" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_weights_file_carrying_code_is_never_unpickled(tmp_path):
    # torch-fidelity itself loads with weights_only=False; the evaluator must not let it.
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": _Payload(str(marker))}, path)
    with pytest.raises(FidelityWeightsError, match=r"eval\.weights_path: checkpoint .*evil\.pth"):
        FidelityEvaluator(path, images(10), feature_extractor="inception")
    assert not marker.exists()


def test_images_must_be_gray_or_rgb(tmp_path, inception_state):
    path = tmp_path / "inception.pth"
    torch.save(inception_state, path)
    with pytest.raises(FidelityInputError, match=r"reference: expected .*\(N >= 10, 3, H, W\)"):
        FidelityEvaluator(path, images(10, channels=2), feature_extractor="inception")


def _tiny_run(root, weights_path) -> tuple:
    """A run folder with one generator checkpoint and its losses, plus labelled data."""
    arch = ArchConfig(image_size=28, channels=1, latent_dim=8, base_channels=4)
    layout = RunLayout(root / "runs/tiny")
    torch.manual_seed(0)
    save_checkpoint(layout.checkpoint_path(4), generator_payload(Generator(arch)))
    with open(layout.losses_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "d_loss", "g_loss"])
        writer.writerows([[s, 1.0 + 0.1 * s, 0.7 - 0.05 * s] for s in range(1, 5)])
    data = PreparedData(
        images(20).numpy(),
        np.arange(20) % 10,
        np.where(np.arange(20) < 10, TRAIN, HELDOUT).astype(np.uint8),
        {"num_classes": 10},
    )
    params = EvalParams(
        num_samples=10,
        kid_subset_size=5,
        batch_size=10,
        feature_extractor="inception",
        weights_path=str(weights_path),
    )
    return data, params


def test_evaluate_hands_the_weights_path_to_the_inception_extractor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # evaluate's cache folder is relative to the project
    weights = tmp_path / "not-inception.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, weights)
    data, params = _tiny_run(tmp_path, weights)
    run = parse_params({}).run("dcgan")
    assert isinstance(run, ResolvedRun)
    with (
        StageRun("evaluate", {"eval": params.model_dump()}, run_key="tiny") as tracker,
        pytest.raises(FidelityWeightsError, match=r"not-inception\.pth: torch-fidelity's incep"),
    ):
        evaluate_run(
            "tiny",
            run,
            params,
            data,
            tmp_path / "models/classifier.pt",  # absent: the classifier is not used
            tmp_path / "runs",
            tmp_path / "evaluation/tiny",
            tracker,
        )
    assert not (tmp_path / "evaluation/tiny/metrics.json").exists()


@pytest.mark.slow
def test_scores_come_from_torch_fidelity_inception_built_from_the_weights_path(
    tmp_path, inception_state
):
    """Grayscale MNIST-sized images go through torch-fidelity's InceptionV3 built from the given
    file (a legacy-format torch file, as older weight releases are); its 2048-d pool features
    land in the reference cache. One FID here costs eigenvalues of a 2048×2048 product."""
    weights = tmp_path / "pt_inception.pth"
    torch.save(inception_state, weights, _use_new_zipfile_serialization=False)
    evaluator = FidelityEvaluator(
        weights,
        images(10, seed=1),
        feature_extractor="inception",
        kid_subset_size=5,
        cache_dir=tmp_path / "cache",
    )
    assert evaluator.repeat == 3 and "-inc-" in evaluator.cache_name
    scores = evaluator(images(10, seed=2))
    assert np.isfinite(list(scores.values())).all() and scores["isc_mean"] >= 1.0

    names = [p.name for p in evaluator.reference_cache_files]
    assert names and all(INCEPTION_NAME in name for name in names), names
    (features,) = [
        p for p in evaluator.reference_cache_files if p.name.endswith("features-2048.pt")
    ]
    reference_features = torch.load(features, weights_only=True)
    assert reference_features.shape == (10, 2048)  # the 10 reference images, Inception's pool
