"""IS / FID / KID through torch-fidelity with the project classifier, and loss statistics."""

from __future__ import annotations

import gc
import math
import os

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ugan.core.checkpoint_io import save_checkpoint
from ugan.data.pixels import to_float
from ugan.evaluation import features
from ugan.evaluation.evaluate import paper_d_scale
from ugan.evaluation.features import (
    EXTRACTOR_NAME,
    ClassifierFeatureExtractor,
    FidelityInputError,
)
from ugan.evaluation.fidelity import (
    METRIC_KEYS,
    MIN_SAMPLES,
    FidelityCacheError,
    FidelityEvaluator,
    floor_metrics,
    validate_images,
)
from ugan.evaluation.stability import loss_statistics, summarize_losses, window_std
from ugan.losses import lsgan_d_loss, ns_d_loss
from ugan.nets.classifier import Classifier, load_classifier

N = 128
SUB = 50  # KID subset size where KID is not the point: ~7x cheaper than 128


def blobs(n: int, seed: int, size: int = 28) -> torch.Tensor:
    """uint8 (n, 1, size, size) images of one Gaussian blob each: a stand-in "real" dataset."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(6, size - 6, (2, n, 1, 1))
    radius = rng.uniform(2, 6, (n, 1, 1))
    img = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    return torch.from_numpy(img.round().astype(np.uint8)[:, None])


def noise(n: int, seed: int) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def make_classifier(path, seed: int) -> None:
    """A randomly initialised classifier whose BatchNorm statistics are set from blob images
    (no training): features then have a useful spread."""
    torch.manual_seed(seed)
    model = Classifier(channels=1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(to_float(blobs(256, 1000 + seed)))
        model.head.weight.mul_(100.0)  # confident predictions, so IS is visibly above 1
    save_checkpoint(path, model.eval().to_payload())


@pytest.fixture(scope="module")
def clf_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    make_classifier(path, seed=0)
    return path


@pytest.fixture(scope="module")
def reference():
    return blobs(N, seed=0)


@pytest.fixture()
def counted(monkeypatch):
    """Number of images each extractor forward pass saw, in call order."""
    seen: list[int] = []
    original = ClassifierFeatureExtractor.forward

    def forward(self, x):
        seen.append(int(x.shape[0]))
        return original(self, x)

    monkeypatch.setattr(ClassifierFeatureExtractor, "forward", forward)
    return seen


@pytest.fixture()
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# -- the feature extractor contract -----------------------------------------------------------


def test_extractor_returns_features_in_requested_order(clf_path, reference):
    model = load_classifier(clf_path)
    batch = reference[:16]
    with torch.no_grad():
        logits = model(to_float(batch))
        feats = model.features(to_float(batch))
    for order in (["features", "logits"], ["logits", "features"], ["logits"]):
        ext = ClassifierFeatureExtractor(
            EXTRACTOR_NAME, order, feature_extractor_weights_path=str(clf_path)
        ).eval()
        with torch.no_grad():
            out = ext(batch)
        assert isinstance(out, tuple) and len(out) == len(order)
        expected = {"logits": logits, "features": feats}
        for name, tensor in zip(order, out, strict=True):
            assert tensor.dtype == torch.float32
            # the extractor runs the net's inference copy (batch norm folded): equal up to
            # float rounding, not bit for bit
            torch.testing.assert_close(tensor, expected[name], rtol=1e-4, atol=2e-4)
    assert feats.shape == (16, 128) and logits.shape == (16, 10)


def test_extractor_never_downloads_without_weights():
    with pytest.raises(ValueError, match="feature_extractor_weights_path"):
        ClassifierFeatureExtractor(EXTRACTOR_NAME, ["logits"])


# -- metric values ----------------------------------------------------------------------------


def test_metrics_order_real_like_and_noise(clf_path, reference, tmp_path, no_download):
    ev = FidelityEvaluator(clf_path, reference, cache_dir=tmp_path)
    same = ev(reference)
    similar = ev(blobs(N, seed=1))
    rubbish = ev(noise(N, seed=0))
    for result in (same, similar, rubbish):
        assert tuple(result) == METRIC_KEYS
        assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
        assert 1.0 - 1e-9 <= result["isc_mean"] <= 10.0 + 1e-9  # 10 classes
    # global pooling makes the features nearly blind to a blob's position, so IS stays low
    assert same["isc_mean"] > 1.01
    assert same["fid"] < 1e-3 * similar["fid"]
    assert similar["fid"] < rubbish["fid"]
    assert abs(same["kid_mean"]) < 1e-3 * rubbish["kid_mean"]
    assert similar["kid_mean"] < rubbish["kid_mean"]
    one_image = ev(reference[:1].expand(N, -1, -1, -1).contiguous())
    assert one_image["isc_mean"] == pytest.approx(1.0, abs=1e-9)  # no diversity: IS is 1


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # dead ReLU features
def test_fid_and_is_match_hand_computation(clf_path, reference, tmp_path):
    """FID from the 128-d features and IS from the logits (torch-fidelity's split / shuffle)."""
    generated = blobs(N, seed=5)
    ev = FidelityEvaluator(clf_path, reference, kid_subset_size=SUB, cache_dir=tmp_path, seed=3)
    result = ev(generated)
    model = load_classifier(clf_path)
    with torch.no_grad():
        f_gen = model.features(to_float(generated)).double().numpy()
        f_ref = model.features(to_float(reference)).double().numpy()
        logits = model(to_float(generated)).double()
    mu1, mu2 = f_gen.mean(0), f_ref.mean(0)
    s1, s2 = np.cov(f_gen, rowvar=False), np.cov(f_ref, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    fid = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    assert result["fid"] == pytest.approx(fid, rel=1e-3, abs=1e-6)

    logits = logits[np.random.RandomState(3).permutation(N)]
    scores = []
    for i in range(10):
        chunk = logits[i * N // 10 : (i + 1) * N // 10]
        p = chunk.softmax(1)
        kl = (p * (chunk.log_softmax(1) - p.mean(0, keepdim=True).log())).sum(1).mean()
        scores.append(kl.exp().item())
    assert result["isc_mean"] == pytest.approx(np.mean(scores), rel=1e-5)
    assert result["isc_std"] == pytest.approx(np.std(scores), rel=1e-4, abs=1e-9)


def test_deterministic_given_seed(clf_path, reference, tmp_path):
    generated = blobs(N, seed=7)
    a = FidelityEvaluator(clf_path, reference, kid_subset_size=50, cache_dir=tmp_path, seed=1)
    b = FidelityEvaluator(clf_path, reference, kid_subset_size=50, seed=1)
    c = FidelityEvaluator(clf_path, reference, kid_subset_size=50, seed=2)
    ra, rb, rc = a(generated), b(generated), c(generated)
    assert ra == rb
    assert ra["fid"] == rc["fid"]  # no randomness in FID
    assert ra["kid_mean"] != rc["kid_mean"]  # KID subsets are drawn from the seed


def test_kid_subset_size_is_clamped(clf_path, reference):
    small = blobs(40, seed=2)
    for size in (None, 10_000):
        result = FidelityEvaluator(clf_path, reference, kid_subset_size=size)(small)
        assert math.isfinite(result["kid_mean"])
    with pytest.raises(ValueError, match="kid_subset_size"):
        FidelityEvaluator(clf_path, reference, kid_subset_size=1)


# -- reference statistics are computed once ----------------------------------------------------


def test_reference_pass_happens_once(clf_path, reference, tmp_path, counted):
    gen_a, gen_b = blobs(150, seed=3), noise(150, seed=1)
    kw = dict(kid_subset_size=SUB, batch_size=64, cache_dir=tmp_path)
    ev = FidelityEvaluator(clf_path, reference, **kw)
    assert ev.reference_cache_files == []
    ev(gen_a)
    assert sum(counted) == N + 150  # reference + generated
    files = ev.reference_cache_files
    assert len(files) == 3  # logits, features, FID statistics
    assert all(
        ev.reference_sha256[:20] in f.name and ev.classifier_sha256[:20] in f.name for f in files
    )
    counted.clear()
    ev(gen_b)
    assert sum(counted) == 150  # generated only

    counted.clear()  # a second evaluator sharing the cache folder reuses it as well
    FidelityEvaluator(clf_path, reference, **kw)(gen_a)
    assert sum(counted) == 150

    counted.clear()  # one changed pixel is a different reference: recomputed, not stale
    changed = reference.clone()
    changed[0, 0, 0, 0] ^= 1
    FidelityEvaluator(clf_path, changed, **kw)(gen_a)
    assert sum(counted) == N + 150

    counted.clear()  # so is another classifier
    other = tmp_path / "other.pt"
    make_classifier(other, seed=1)
    ev_other = FidelityEvaluator(other, reference, **kw)
    assert ev_other.cache_name != ev.cache_name
    ev_other(gen_a)
    assert sum(counted) == N + 150


def test_private_cache_is_removed_with_evaluator(clf_path, reference):
    ev = FidelityEvaluator(clf_path, reference, kid_subset_size=SUB)
    root = ev.cache_root
    ev(blobs(20, seed=4))
    assert len(ev.reference_cache_files) == 3
    del ev
    gc.collect()
    assert not root.exists()


def test_classifier_replaced_after_construction_is_refused(reference, tmp_path):
    path = tmp_path / "clf.pt"
    make_classifier(path, seed=0)
    ev = FidelityEvaluator(path, reference, cache_dir=tmp_path / "cache", kid_subset_size=SUB)
    make_classifier(path, seed=2)
    with pytest.raises(FidelityCacheError, match="changed"):
        ev(reference)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_cache_file_carrying_code_is_refused(clf_path, reference, tmp_path):
    ev = FidelityEvaluator(clf_path, reference, cache_dir=tmp_path / "cache", kid_subset_size=SUB)
    ev(reference[:20])
    marker = tmp_path / "code-ran"
    torch.save(_Payload(str(marker)), ev.reference_cache_files[0])
    with pytest.raises(FidelityCacheError, match="refusing"):
        ev(reference[:20])
    assert not marker.exists()


# -- input validation --------------------------------------------------------------------------


def test_validate_images_errors_say_what_was_expected():
    good = torch.zeros(MIN_SAMPLES, 1, 28, 28, dtype=torch.uint8)
    validate_images(good, channels=1, name="generated", min_count=MIN_SAMPLES)
    cases = [
        (good.float().div(127.5).sub(1), r"generated: expected uint8 .*got dtype torch.float32"),
        (good[0], r"expected uint8 images of shape \(N >= 10, 1, H, W\).*3-D"),
        (good.expand(-1, 3, -1, -1), r"\(N >= 10, 1, H, W\).*got 3 channels"),
        (good[:3], "expected at least 10 samples, got 3"),
        (good.numpy(), "expected uint8 images.*ndarray"),
    ]
    for images, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            validate_images(images, channels=1, name="generated", min_count=MIN_SAMPLES)
        assert isinstance(info.value, FidelityInputError)


def test_evaluator_rejects_bad_inputs(clf_path, reference):
    with pytest.raises(ValueError, match="reference: expected at least 10 samples"):
        FidelityEvaluator(clf_path, reference[:5])
    ev = FidelityEvaluator(clf_path, reference)
    with pytest.raises(ValueError, match="got dtype torch.float32"):
        ev(to_float(reference))
    with pytest.raises(ValueError, match="got 3 channels"):
        ev(reference.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="expected at least 10 samples, got 9"):
        ev(reference[:9])
    with pytest.raises(ValueError, match=r"shape \(N, 1, 28, 28\)"):
        ev(blobs(20, seed=0, size=32))
    assert ev.reference_cache_files == []  # nothing was computed for rejected inputs


def test_numpy_inputs_are_accepted(clf_path, reference):
    ev = FidelityEvaluator(clf_path, reference.numpy(), kid_subset_size=SUB)
    assert ev(reference.numpy()[:50]) == ev(reference[:50])


def test_floor_metrics_scores_train_against_heldout(clf_path, reference):
    train = blobs(300, seed=11)
    kw = dict(kid_subset_size=SUB, seed=4)
    floor = floor_metrics(clf_path, reference, train, **kw)
    assert floor == FidelityEvaluator(clf_path, reference, **kw)(train)
    sub = floor_metrics(clf_path, reference, train, num_samples=100, **kw)
    assert sub != floor
    assert sub == floor_metrics(clf_path, reference, train, num_samples=100, **kw)
    assert floor["fid"] < FidelityEvaluator(clf_path, reference, **kw)(noise(300, seed=2))["fid"]
    with pytest.raises(ValueError, match="num_samples"):
        floor_metrics(clf_path, reference, train, num_samples=301)


def test_module_registers_extractor_once():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    features._register_extractor()  # idempotent: no "already registered" error
    assert FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR_NAME] is ClassifierFeatureExtractor


# -- loss statistics ---------------------------------------------------------------------------


def test_window_std_counts_oscillation_not_the_drift_of_the_level():
    drift = np.repeat([4.0, 3.0, 2.0, 1.0], 10)  # a level falling in steps, flat in each window
    assert np.std(drift) > 1.0 and window_std(drift, 10) == 0.0
    wiggle = np.tile([1.0, -1.0], 20) + np.linspace(1, 0, 40)  # ±1 on a falling line
    assert window_std(wiggle, 10) == pytest.approx(1.0, abs=0.1)
    assert window_std([1.0, np.nan, 3.0, 5.0], 2) == 1.0  # the window [1] is skipped
    assert math.isnan(window_std([1.0], 10))
    with pytest.raises(ValueError, match="at least 2"):
        window_std([1.0, 2.0], 1)


def test_loss_statistics_by_hand():
    stats = loss_statistics([1.0, 2.0, 3.0, 4.0])
    assert stats["mean"] == pytest.approx(2.5)
    assert stats["std"] == pytest.approx(math.sqrt(1.25))  # population: sqrt(5 / 4)
    stats = loss_statistics(np.array([1.0, np.nan, 3.0]))
    assert stats == {"mean": pytest.approx(2.0), "std": pytest.approx(1.0)}
    assert loss_statistics([0.7]) == {"mean": pytest.approx(0.7), "std": 0.0}


@pytest.mark.parametrize("values", [[], [float("nan")] * 3, [[1.0, 2.0]]])
def test_loss_statistics_rejects_empty(values):
    with pytest.raises(ValueError, match="expected"):
        loss_statistics(values)


def test_summarize_losses():
    out = summarize_losses({"d_loss": [0.5, 1.5], "g_loss": [2.0, 2.0, float("nan"), 5.0]})
    assert out == {
        "d_loss_mean": pytest.approx(1.0),
        "d_loss_std": pytest.approx(0.5),
        "g_loss_mean": pytest.approx(3.0),
        "g_loss_std": pytest.approx(math.sqrt(2.0)),  # deviations -1, -1, 2 → 6 / 3
    }
    with pytest.raises(ValueError, match="g_loss"):
        summarize_losses({"d_loss": [1.0], "g_loss": []})


def test_the_d_loss_is_also_reported_on_the_unbalanced_gan_papers_scale():
    """Paper Fig. 3 reports D's loss as the mean of its two terms (ln 2 = 0.69 at D = ½; its
    means 0.65 / 0.69), ours trains on their sum: the paper-scale statistic is half of ours
    for ns (so is its std), unchanged for lsgan (already the mean, 0.25 at D = ½)."""
    half = torch.zeros(8)  # logits 0: D = ½ everywhere
    ns = paper_d_scale("gan", "ns") * ns_d_loss(half, half).item()
    assert ns == pytest.approx(math.log(2))
    assert paper_d_scale("gan", "lsgan") * lsgan_d_loss(half + 0.5, half + 0.5).item() == 0.25
    assert paper_d_scale("rfgan", "ns") == 0.5
    assert paper_d_scale("began", "ns") == paper_d_scale("gaan", "ns") == 1.0  # their own
    out = summarize_losses({"d_loss": [1.0, 2.0], "g_loss": [1.0]}, d_scale=0.5)
    assert (out["d_loss_std"], out["d_loss_paper_std"]) == (0.5, 0.25)
    assert (out["d_loss_mean"], out["d_loss_paper_mean"]) == (1.5, 0.75)
