"""Precision / recall / density / coverage (ugan.evaluation.prdc) on constructed data whose
answers are known, on the features FID uses, and k as a validated param."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_metrics import blobs, make_classifier, noise

from ugan.config.load import parse_params
from ugan.core.errors import ConfigError
from ugan.data.pixels import to_float
from ugan.evaluation.features import FidelityInputError
from ugan.evaluation.fidelity import FidelityEvaluator
from ugan.evaluation.prdc import (
    PRDC_KEYS,
    PRDCEvaluator,
    fid_singular,
    prdc_of_features,
    scoring_record,
)
from ugan.nets.classifier import load_classifier

D = 8  # feature dimension of the constructed sets
K = 5


@pytest.fixture(scope="module")
def real():
    """Train-split features: a standard Gaussian cloud."""
    return np.random.default_rng(0).standard_normal((1000, D))


def test_held_out_real_scores_near_one_on_all_four(real):
    heldout = np.random.default_rng(1).standard_normal((1000, D))
    result = prdc_of_features(real, heldout, K)
    assert tuple(result) == PRDC_KEYS
    assert result["precision"] > 0.85 and result["recall"] > 0.85
    assert result["density"] == pytest.approx(1.0, abs=0.1)
    assert result["coverage"] > 0.95


def test_collapsed_set_has_high_precision_and_low_recall_and_coverage(real):
    """Every generated sample ≈ one real point: all of them lie on the real manifold
    (precision 1), but they cover one real neighbourhood of 1000 (recall, coverage ≈ 0)."""
    collapsed = real[17] + 1e-3 * np.random.default_rng(2).standard_normal((1000, D))
    result = prdc_of_features(real, collapsed, K)
    assert result["precision"] > 0.99
    assert result["recall"] < 0.02
    assert result["coverage"] < 0.02


def test_shifted_set_scores_low_precision(real):
    shifted = np.random.default_rng(3).standard_normal((1000, D)) + 2.5
    result = prdc_of_features(real, shifted, K)
    assert result["precision"] < 0.1
    assert result["density"] < 0.1 and result["coverage"] < 0.2
    # Half shifted: precision drops to about the unshifted half.
    half = np.concatenate([real[:500] + 0.01, shifted[:500]])
    assert 0.4 < prdc_of_features(real, half, K)["precision"] < 0.6


def test_nearest_k_must_leave_k_other_samples(real):
    for k in (0, 10):
        with pytest.raises(ConfigError, match=r"eval\.nearest_k: must be an integer from 1 to 9"):
            prdc_of_features(real, real[:10], k)
    with pytest.raises(ValueError, match="same d"):
        prdc_of_features(real, real[:, :3], K)


def test_nearest_k_is_a_validated_eval_param():
    assert parse_params({}).eval.nearest_k == 5
    assert parse_params({"eval": {"nearest_k": 3}}).eval.nearest_k == 3
    with pytest.raises(ConfigError, match=r"eval\.nearest_k: Input should be greater than 0"):
        parse_params({"eval": {"nearest_k": 0}})
    with pytest.raises(ConfigError, match=r"eval\.nearest_k: Input should be a valid integer"):
        parse_params({"eval": {"nearest_k": "five"}})
    with pytest.raises(ConfigError, match=r"eval\.nearest_k must be an integer from 1 to 99 "):
        parse_params({"eval": {"num_samples": 100, "nearest_k": 100}})


def test_fid_is_flagged_singular_when_n_is_not_above_d():
    assert fid_singular(1000, 1000, 128) is None
    assert fid_singular(129, 500, 128) is None
    reason = fid_singular(128, 500, 128)
    assert reason.startswith("N=128 ≤ d=128") and "generated covariance is singular" in reason
    assert fid_singular(1000, 100, 2048).startswith("N=100 ≤ d=2048: the reference")


@pytest.fixture(scope="module")
def clf_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    make_classifier(path, seed=0)
    return path


def test_images_are_scored_on_the_features_fid_uses(clf_path):
    reference = blobs(200, seed=0)
    evaluator = FidelityEvaluator(clf_path, reference, kid_subset_size=50)
    features = evaluator.features(reference)
    with torch.no_grad():
        by_hand = load_classifier(clf_path).features(to_float(reference))
    assert features.shape == (200, 128)
    torch.testing.assert_close(features, by_hand)
    with pytest.raises(
        FidelityInputError, match=r"images: expected images of shape \(N, 1, 28, 28\)"
    ):
        evaluator.features(blobs(20, seed=0, size=32))

    prdc = PRDCEvaluator(evaluator, K)
    assert prdc.feature_dim == 128
    similar = prdc(blobs(200, seed=1))  # other blobs of the same distribution
    assert similar["precision"] > 0.8 and similar["recall"] > 0.8
    assert similar["density"] == pytest.approx(1.0, abs=0.25) and similar["coverage"] > 0.8
    one_blob = prdc(reference[:1].expand(200, -1, -1, -1).contiguous())
    assert one_blob["precision"] == 1.0 and one_blob["coverage"] < 0.1
    assert prdc(noise(200, seed=0))["precision"] < 0.1
    assert prdc.scoring_record(200) == scoring_record(evaluator.weights_sha256, 200, 200, 128)
    with pytest.raises(ConfigError, match=r"eval\.nearest_k"):
        PRDCEvaluator(evaluator, 200)


class _Tracker:
    """Records what evaluate_run logs (MLflow metrics per step), nothing else."""

    def __init__(self):
        self.metrics: dict[int | None, dict] = {}

    def log_metrics(self, values, step=None):
        self.metrics.setdefault(step, {}).update(values)

    def log_artifact(self, *args, **kwargs):
        pass


def test_evaluate_writes_prdc_and_what_scored_it_everywhere(tmp_path, tiny_arch, tiny_data):
    """Through `evaluate_run`: PRDC per checkpoint in fidelity.csv, metrics.json (final and per
    checkpoint) and the MLflow metrics of each step; every row carries the feature network's
    digest and N; info.json says FID is singular at N = 32 held-out images < d = 128."""
    import csv
    import json

    from ugan.core.checkpoint_io import save_checkpoint
    from ugan.core.io import file_digest
    from ugan.core.paths import RunLayout
    from ugan.evaluation.evaluate import FIDELITY_COLUMNS, evaluate_run
    from ugan.nets.classifier import Classifier
    from ugan.nets.dcgan import Generator
    from ugan.nets.generator_file import generator_payload

    torch.manual_seed(0)
    layout = RunLayout(tmp_path / "runs" / "dcgan")
    one_image = Generator(tiny_arch)
    with torch.no_grad():
        for name, value in one_image.named_parameters():
            if "weight" in name and value.dim() > 1 and name.startswith("project"):
                value.zero_()  # the same picture for every z: a collapsed generator
    save_checkpoint(layout.checkpoint_path(1), generator_payload(one_image, step=1))
    save_checkpoint(layout.checkpoint_path(2), generator_payload(Generator(tiny_arch), step=2))
    layout.losses_csv.write_text("step,d_loss,g_loss\n1,1.0,1.0\n2,0.9,1.1\n")
    classifier = tmp_path / "classifier.pt"
    save_checkpoint(classifier, Classifier().to_payload())
    params = parse_params({"eval": {"num_samples": 64, "kid_subset_size": 16, "nearest_k": 3}})
    tracker = _Tracker()
    out = tmp_path / "evaluation"
    with pytest.warns(UserWarning, match="collapsed"):
        evaluate_run(
            "dcgan", params.run("dcgan"), params.eval, tiny_data, classifier,
            tmp_path / "runs", out, tracker,
        )  # fmt: skip
    with open(out / "fidelity.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == FIDELITY_COLUMNS
    digest = file_digest(classifier)
    for row in rows:
        assert row["feature_sha256"] == digest
        assert (row["num_samples"], row["num_reference"], row["feature_dim"]) == ("64", "32", "128")
        assert all(0.0 <= float(row[k]) for k in PRDC_KEYS)
    collapsed = rows[0]
    assert float(collapsed["recall"]) < 0.1 and float(collapsed["coverage"]) < 0.2

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["num_samples"] == 64 and metrics["final"]["feature_dim"] == 128
    assert metrics["final"]["coverage"] == pytest.approx(float(rows[-1]["coverage"]), rel=1e-5)
    assert list(metrics["checkpoints"]) == ["1", "2"]  # keyed by step: numbers only for dvc
    assert metrics["checkpoints"]["1"]["recall"] == pytest.approx(float(collapsed["recall"]))
    assert set(PRDC_KEYS) <= set(metrics["floor"])
    for step in (1, 2):
        assert set(PRDC_KEYS) <= set(tracker.metrics[step])
    info = json.loads((out / "info.json").read_text())
    assert info["feature_network"]["sha256"] == digest
    assert info["scoring"]["nearest_k"] == 3 and info["scoring"]["feature_sha256"] == digest
    assert info["scoring"]["fid_singular"].startswith("N=32 ≤ d=128: the reference covariance")
