"""MS-SSIM and the MS-SSIM diversity of image sets (lower = more diverse)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ugan.evaluation.diversity import (
    K1,
    WEIGHTS,
    diversity_metrics,
    ms_ssim,
    msssim_diversity,
    num_scales,
    random_pairs,
    scale_weights,
)


def _noise(count: int, channels: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.integers(0, 256, (count, channels, size, size), dtype=np.uint8))


def _smooth(images: torch.Tensor, width: int = 9) -> torch.Tensor:
    """Blurred noise: images with structure at several scales, still uint8."""
    blurred = F.avg_pool2d(images.float(), width, stride=1, padding=width // 2)
    return blurred.round().clamp(0, 255).to(torch.uint8)


def test_scales_shrink_for_small_images():
    assert [num_scales(s, s) for s in (28, 32, 64, 175, 176, 512)] == [2, 2, 3, 4, 5, 5]
    assert num_scales(64, 28) == 2  # the shorter side decides
    with pytest.raises(ValueError, match="at least 11×11"):
        num_scales(10, 28)
    with pytest.raises(ValueError, match="need images of at least 176 px"):
        ms_ssim(_noise(1, 1, 28, 0), _noise(1, 1, 28, 1), scales=5)


def test_weights_are_the_standard_ones_rescaled_for_fewer_scales():
    assert scale_weights(5).tolist() == pytest.approx(list(WEIGHTS), abs=1e-15)
    two = scale_weights(2)
    assert two.sum().item() == pytest.approx(sum(WEIGHTS))
    assert (two[1] / two[0]).item() == pytest.approx(WEIGHTS[1] / WEIGHTS[0])


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (3, 64)])
def test_identical_images_score_one(channels, size):
    x = _smooth(_noise(4, channels, size, 0))
    assert torch.allclose(ms_ssim(x, x), torch.ones(4, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (3, 64)])
def test_independent_noise_images_score_low(channels, size):
    values = ms_ssim(_noise(16, channels, size, 1), _noise(16, channels, size, 2))
    assert values.max() < 0.15 and values.mean() < 0.08


@pytest.mark.parametrize(("size", "scales"), [(28, 2), (64, 3)])
def test_constant_images_by_hand(size, scales):
    # Constant images have no variance, so every contrast-structure term is C2 / C2 = 1 and
    # MS-SSIM is the coarsest luminance term l = (2ab + C1) / (a² + b² + C1) to the power w_M.
    a, b = 100.0, 150.0
    c1 = (K1 * 255) ** 2
    luminance = (2 * a * b + c1) / (a**2 + b**2 + c1)
    w_last = WEIGHTS[scales - 1] * sum(WEIGHTS) / sum(WEIGHTS[:scales])
    x = torch.full((2, 1, size, size), int(a), dtype=torch.uint8)
    y = torch.full((2, 1, size, size), int(b), dtype=torch.uint8)
    expected = luminance**w_last
    assert ms_ssim(x, y).tolist() == pytest.approx([expected] * 2, abs=5e-5)  # float32
    assert ms_ssim(x, y, dtype=torch.float64).tolist() == pytest.approx([expected] * 2, abs=1e-12)


def test_matches_the_reference_package_at_five_scales():
    # Golden values from pytorch-msssim 1.0.0 (`ms_ssim(X.double(), Y.double(), data_range=255,
    # size_average=False)`), whose Gaussian window is float32: agreement to ~1e-5.
    rng = np.random.default_rng(0)
    base = torch.as_tensor(rng.integers(0, 256, (2, 3, 192, 192), dtype=np.uint8)).float()
    smooth = F.avg_pool2d(base, 9, 1, 4)
    noise = torch.as_tensor(rng.normal(0, 20, smooth.shape)).float()
    x = smooth.round().clamp(0, 255).to(torch.uint8)
    y = (smooth + noise).round().clamp(0, 255).to(torch.uint8)
    assert ms_ssim(x, y).tolist() == pytest.approx([0.74358242, 0.74866335], abs=2e-5)
    assert ms_ssim(x, x.flip(0)).tolist() == pytest.approx([0.49156657] * 2, abs=2e-5)


def test_symmetric_and_ordered_by_distortion():
    x = _smooth(_noise(3, 3, 32, 3))
    rng = np.random.default_rng(4)
    scores = []
    for sd in (5, 20, 60):
        noisy = (x.float() + torch.as_tensor(rng.normal(0, sd, x.shape))).round().clamp(0, 255)
        noisy = noisy.to(torch.uint8)
        assert torch.allclose(ms_ssim(x, noisy), ms_ssim(noisy, x))
        scores.append(ms_ssim(x, noisy).mean().item())
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_copies_are_less_diverse_than_a_varied_set():
    varied = _smooth(_noise(40, 3, 32, 5), width=3)
    copies = varied[:1].repeat(40, 1, 1, 1)
    near_copies = (copies.float() + torch.randint(-3, 4, copies.shape)).clamp(0, 255)
    near_copies = near_copies.to(torch.uint8)
    d_varied = msssim_diversity(varied, num_pairs=200, seed=0)
    d_near = msssim_diversity(near_copies, num_pairs=200, seed=0)
    assert msssim_diversity(copies, num_pairs=200, seed=0) == pytest.approx(1.0)
    assert 1.0 > d_near > 0.8 and d_varied < 0.2


def test_diversity_is_seeded_and_pairs_are_distinct():
    images = _smooth(_noise(30, 1, 28, 6))
    assert msssim_diversity(images, 100, seed=1) == msssim_diversity(images, 100, seed=1)
    assert msssim_diversity(images, 100, seed=1) != msssim_diversity(images, 100, seed=2)
    a, b = random_pairs(5, 2000, seed=0)
    assert (a != b).all() and set(a) == set(b) == set(range(5))


def test_diversity_metrics_report_generated_and_real():
    real = _smooth(_noise(30, 3, 32, 7))
    collapsed = real[:2].repeat(15, 1, 1, 1)
    metrics = diversity_metrics(collapsed, real, num_pairs=100, seed=0)
    assert set(metrics) == {"msssim", "msssim_real"}
    assert metrics["msssim_real"] == msssim_diversity(real, 100, seed=0)
    assert metrics["msssim"] > metrics["msssim_real"]  # the collapsed set is less diverse


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        msssim_diversity(torch.rand(4, 1, 28, 28), 10)
    with pytest.raises(ValueError, match="at least 2 images"):
        msssim_diversity(_noise(1, 1, 28, 0), 10)
    with pytest.raises(ValueError, match="num_pairs"):
        msssim_diversity(_noise(4, 1, 28, 0), 0)
    with pytest.raises(ValueError, match="one shape"):
        ms_ssim(_noise(2, 1, 28, 0), _noise(2, 1, 32, 0))
