"""Mode-coverage metrics on constructed samples: true mixtures, collapsed generators, noise,
and Stacked MNIST with a fake classifier whose labels are known."""

import math

import numpy as np
import pytest
import torch

from ugan.data.toy import EVAL_SAMPLES, MIXTURES, grid25, make_mixture, ring8
from ugan.data.toy import true_registered_fraction as p_true
from ugan.evaluation.modes import (
    MIN_MODE_COUNT,
    assign_modes,
    classifier_labeller,
    kl_to_uniform,
    mode_coverage,
    stacked_mode_metrics,
    stacked_modes,
    toy_mode_metrics,
    toy_mode_report,
)
from ugan.nets.classifier import Classifier

# -- 2-D mixtures -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_true_mixture_covers_every_mode_at_gaans_sample_size(name):
    mixture = make_mixture(name)
    for seed in range(3):
        metrics = toy_mode_metrics(mixture.sample(EVAL_SAMPLES, seed=seed), mixture)
        assert metrics["modes_covered"] == mixture.num_modes


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_true_mixture_is_registered_and_balanced(name):
    mixture = make_mixture(name)
    n = 20_000
    metrics = toy_mode_metrics(mixture.sample(n, seed=1), mixture)
    # 3 σ in 2-D holds 1 − e^{−4.5} = 98.9 % of a Gaussian: within 4 binomial sd of that
    assert abs(metrics["registered_fraction"] - p_true()) < 4 * math.sqrt(
        p_true() * (1 - p_true()) / n
    )
    assert metrics["registered_fraction"] > 0.98
    assert metrics["registered_points"] == pytest.approx(metrics["registered_fraction"] * n)
    # sampling noise alone: ½ K √(2/π) √((1/K)(1 − 1/K) / n) ≈ 0.014 for the grid
    assert metrics["mode_tv"] < 0.03


@pytest.mark.parametrize("mixture", [ring8(), grid25()], ids=["ring8", "grid25"])
def test_collapsed_generator_covers_one_mode(mixture):
    at_one_mean = np.repeat(mixture.centres[3:4], EVAL_SAMPLES, axis=0)
    metrics = toy_mode_metrics(at_one_mean, mixture)
    assert metrics["modes_covered"] == 1
    assert metrics["registered_points"] == EVAL_SAMPLES
    assert metrics["mode_tv"] == pytest.approx(1 - 1 / mixture.num_modes)
    # a collapse with the right spread is still one mode
    rng = np.random.default_rng(0)
    blob = mixture.centres[3] + mixture.sigma * rng.standard_normal((EVAL_SAMPLES, 2))
    assert toy_mode_metrics(blob, mixture)["modes_covered"] == 1


def test_uniform_noise_over_a_big_box_is_almost_never_registered():
    mixture = grid25()
    noise = np.random.default_rng(0).uniform(-50, 50, size=(20_000, 2))
    metrics = toy_mode_metrics(noise, mixture)
    # expected: 25 discs of radius 0.15 in a 100×100 box = 0.018 %
    assert metrics["registered_fraction"] < 0.002
    assert metrics["modes_covered"] == 0


def test_half_the_modes_gives_half_the_coverage_and_tv_near_the_missing_mass():
    mixture = grid25()
    points, modes = mixture.sample_with_modes(40_000, seed=2)
    kept = points[modes < 12]
    metrics = toy_mode_metrics(kept, mixture)
    assert metrics["modes_covered"] == 12
    # TV(uniform over 12 of 25, uniform over 25) = 13/25
    assert metrics["mode_tv"] == pytest.approx(13 / 25, abs=0.02)


def test_a_mode_needs_twenty_registered_points_to_count():
    mixture = ring8()
    points = np.concatenate(
        [np.repeat(mixture.centres[:1], MIN_MODE_COUNT, 0), np.repeat(mixture.centres[1:2], 19, 0)]
    )
    report = toy_mode_report(points, mixture)
    assert report.counts[:3] == (20, 19, 0)
    assert report.modes_covered == 1
    assert toy_mode_report(points, mixture, min_count=1).modes_covered == 2


def test_registration_radius_is_inclusive_and_nearest_mean_wins():
    centres = np.array([[0.0, 0.0], [1.0, 0.0]])
    points = np.array([[0.3, 0.0], [0.3 + 1e-6, 0.0], [0.0, -0.3], [0.9, 0.0], [0.45, 0.0]])
    assert assign_modes(points, centres, radius=0.3).tolist() == [0, -1, 0, 1, -1]
    assert assign_modes(points, centres, radius=0.2).tolist() == [-1, -1, -1, 1, -1]


def test_torch_points_are_accepted_and_bad_points_rejected():
    mixture = ring8()
    x = torch.as_tensor(mixture.sample(100, seed=0))
    assert toy_mode_metrics(x, mixture) == toy_mode_metrics(x.numpy(), mixture)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        toy_mode_metrics(np.zeros((4, 3)), mixture)
    with pytest.raises(ValueError, match="not finite"):
        toy_mode_metrics(np.array([[0.0, np.nan]]), mixture)


def test_no_registered_point_scores_as_far_as_a_collapse():
    metrics = toy_mode_metrics(np.full((10, 2), 100.0), ring8())
    assert metrics["registered_points"] == 0 and metrics["mode_tv"] == pytest.approx(7 / 8)
    assert toy_mode_metrics(np.zeros((0, 2)), ring8())["registered_fraction"] == 0.0


# -- Stacked MNIST ----------------------------------------------------------------------------


def _stacked_images(modes: np.ndarray, size: int = 4) -> np.ndarray:
    """(N, 3, size, size) uint8 images whose channel c is filled with digit c of the mode."""
    digits = np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=1)
    return np.broadcast_to(digits[:, :, None, None], (len(modes), 3, size, size)).astype(np.uint8)


def _pixel_reader(channels: np.ndarray) -> np.ndarray:
    """A fake classifier: the digit of a (M, 1, H, W) channel is its top-left pixel."""
    assert channels.shape[1] == 1
    return channels[:, 0, 0, 0].astype(np.int64)


def test_channels_are_read_in_rgb_order():
    image = np.zeros((1, 3, 4, 4), np.uint8)
    image[0, 0], image[0, 1], image[0, 2] = 1, 2, 3
    assert stacked_modes(image, _pixel_reader).tolist() == [123]
    assert stacked_modes(torch.as_tensor(image), _pixel_reader).tolist() == [123]


def test_every_mode_once_is_full_coverage_and_zero_kl():
    metrics = stacked_mode_metrics(_stacked_images(np.arange(1000)), _pixel_reader)
    assert metrics == {"modes_covered": 1000.0, "kl_uniform": pytest.approx(0.0, abs=1e-12)}


def test_known_histograms_give_exact_counts_and_kl():
    hundred_modes = np.repeat(np.arange(0, 1000, 10), 5)  # 100 modes × 5 samples
    metrics = stacked_mode_metrics(_stacked_images(hundred_modes), _pixel_reader)
    assert metrics["modes_covered"] == 100
    assert metrics["kl_uniform"] == pytest.approx(math.log(10))
    collapsed = stacked_mode_metrics(_stacked_images(np.full(64, 407)), _pixel_reader)
    assert collapsed == {"modes_covered": 1.0, "kl_uniform": pytest.approx(math.log(1000))}
    uneven = stacked_mode_metrics(_stacked_images(np.array([5, 5, 5, 999])), _pixel_reader)
    assert uneven["modes_covered"] == 2
    assert uneven["kl_uniform"] == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))


def test_a_labeller_of_probabilities_also_says_how_many_images_were_read_confidently():
    """`confident`: the images whose three digits each get p ≥ 0.9, so a blob that the argmax
    reads as some digit counts as a mode but not as a confident image."""

    def probabilities(channels: np.ndarray) -> np.ndarray:
        """The pixel reader's digit with p 0.95, or 0.5 where the last pixel is marked 200."""
        digits = _pixel_reader(channels)
        p = np.full((len(digits), 10), 0.0, np.float32)
        sure = np.where(channels[:, 0, -1, -1] == 200, 0.5, 0.95)
        p[np.arange(len(digits)), digits] = sure
        return p

    images = _stacked_images(np.array([123, 456, 789, 123]))
    images[1, 2, -1, -1] = 200  # image 1's blue channel is unsure
    read = stacked_mode_metrics(images, probabilities)
    labels = stacked_mode_metrics(images, _pixel_reader)
    assert read == {**labels, "confident": 0.75}
    assert "confident" not in labels
    assert stacked_modes(images, probabilities).tolist() == [123, 456, 789, 123]


def test_kl_and_coverage_helpers():
    assert kl_to_uniform(np.array([1, 1, 0, 2])) == pytest.approx(
        0.25 * math.log(1) + 0.25 * math.log(1) + 0.5 * math.log(2)
    )
    with pytest.raises(ValueError, match="empty histogram"):
        kl_to_uniform(np.zeros(3))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mode_coverage(np.array([3, 10]), num_modes=10)


def test_a_misbehaving_classifier_is_named():
    images = _stacked_images(np.arange(4))
    with pytest.raises(ValueError, match=r"shape \(4,\) for 12 channels"):
        stacked_modes(images, lambda x: np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="digits 0..9"):
        stacked_modes(images, lambda x: np.full(len(x), 10))
    with pytest.raises(ValueError, match=r"uint8 \(N, 3, H, W\)"):
        stacked_modes(images[:, :1], _pixel_reader)


def test_the_project_classifier_serves_as_labeller():
    torch.manual_seed(0)
    model = Classifier(channels=1, num_classes=10)
    labeller = classifier_labeller(model, batch_size=7)
    channels = np.random.default_rng(0).integers(0, 256, (20, 1, 28, 28), dtype=np.uint8)
    labels = labeller(channels)
    with torch.no_grad():
        expected = model(torch.as_tensor(channels).float() / 127.5 - 1).argmax(1).numpy()
    assert labels.shape == (20,) and np.array_equal(labels, expected)
    stacked = np.random.default_rng(1).integers(0, 256, (5, 3, 28, 28), dtype=np.uint8)
    metrics = stacked_mode_metrics(stacked, labeller)
    assert 1 <= metrics["modes_covered"] <= 5
