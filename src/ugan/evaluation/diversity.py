"""MS-SSIM diversity (Odena et al. 2016; RFGAN Table 1): the mean multi-scale structural
similarity of random pairs of images. Lower = more diverse; identical images score 1.

MS-SSIM (Wang, Simoncelli & Bovik 2003), implemented here in torch:
- an 11×11 Gaussian window with σ = 1.5 (separable), applied without padding ("valid"),
  K1 = 0.01, K2 = 0.03, data range 255 (uint8 images);
- per scale j: contrast-structure cs_j = mean of (2σ_xy + C2) / (σ_x² + σ_y² + C2); at the
  coarsest scale M the full SSIM = mean of luminance · contrast-structure;
  MS-SSIM = Π_{j<M} cs_j^{w_j} · SSIM_M^{w_M}; between scales both images are 2×2 average-pooled;
- the standard weights w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333);
- negative cs / SSIM values (anti-correlated structure) are clamped to 0 before the power, as
  in the pytorch-msssim package, so the fractional powers stay real;
- colour images: MS-SSIM per channel, then the mean over channels.

Small images: five scales need a side of at least 11·2⁴ = 176 px. `num_scales` keeps the
largest M ≤ 5 whose coarsest scale is still at least as wide as the window, and the first M
weights are rescaled to the sum of all five (so 5 scales use the published weights exactly,
and fewer scales keep their ratios). That gives
M = 2 for 28 and 32 px (28→14, 32→16) and M = 3 for 64 px (64→32→16). Scores are therefore
comparable between runs of one image size; RFGAN's CelebA (64 px) values, real data 0.3727,
come from an implementation the paper does not describe, so set them beside ours as a
reference, not as the same number.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def num_scales(height: int, width: int, window: int = WINDOW_SIZE) -> int:
    """The number of scales for (H, W) images: at most 5, the coarsest at least `window` wide."""
    side = min(height, width)
    if side < window:
        raise ValueError(
            f"MS-SSIM needs images of at least {window}×{window}, got {height}×{width}"
        )
    scales = 1
    while scales < len(WEIGHTS) and side // 2 >= window:
        side //= 2
        scales += 1
    return scales


def scale_weights(scales: int) -> torch.Tensor:
    """The first `scales` standard weights, rescaled to the sum of all five (1.0001 as published,
    so 5 scales use the published weights exactly); float64 (scales,)."""
    if not 1 <= scales <= len(WEIGHTS):
        raise ValueError(f"scales must lie in 1..{len(WEIGHTS)}, got {scales}")
    w = torch.tensor(WEIGHTS[:scales], dtype=torch.float64)
    return w * (sum(WEIGHTS) / w.sum())


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian, float64 (size,)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _band(size: int, window: torch.Tensor) -> torch.Tensor:
    """(size − k + 1, size) matrix whose row i holds `window` at columns i … i + k − 1: multiplying
    by it is the valid 1-D correlation with `window` (on CPU, 5× faster than conv2d here)."""
    k = len(window)
    band = torch.zeros(size - k + 1, size, dtype=window.dtype, device=window.device)
    for i in range(size - k + 1):
        band[i, i : i + k] = window
    return band


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(…, H, W) → (…, H − k + 1, W − k + 1): separable Gaussian, no padding."""
    rows, cols = _band(x.shape[-2], window), _band(x.shape[-1], window)
    return rows @ x @ cols.T


def _ssim_cs(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure over the valid map, each (B, C)."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    # (Co)variances do not change when both images shift by one constant: the moments of the
    # images minus their joint mean keep E[x²] − μ² accurate in float32.
    shift = (x.mean(dim=(2, 3), keepdim=True) + y.mean(dim=(2, 3), keepdim=True)) / 2.0
    xs, ys = x - shift, y - shift
    # one batched blur of the five moments: (5, B, C, H', W')
    m_x, m_y, xx, yy, xy = _blur(torch.stack([xs, ys, xs * xs, ys * ys, xs * ys]), window)
    var_x, var_y, cov = xx - m_x**2, yy - m_y**2, xy - m_x * m_y
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    # (2 μx μy + C1) / (μx² + μy² + C1), written as 1 − (μx − μy)² / (μx² + μy² + C1)
    mu_x, mu_y = m_x + shift, m_y + shift
    luminance = 1.0 - (m_x - m_y) ** 2 / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs_map).mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ms_ssim(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    data_range: float = DATA_RANGE,
    scales: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """MS-SSIM of each pair (x[i], y[i]) of (B, C, H, W) images (uint8, or float in
    [0, data_range]) → float64 (B,). `scales` defaults to `num_scales(H, W)`. Computed in
    `dtype`: float32 is twice as fast as float64 on CPU; with the moments taken about the
    pair's mean it agrees with float64 to ~1e-8 on textured images and to ~3e-5 on flat ones
    (where the rounding of E[x²] − μ² is compared with C2 = 58.5 alone)."""
    x = torch.as_tensor(x).to(dtype)
    y = torch.as_tensor(y).to(dtype)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"need two (B, C, H, W) batches of one shape, got {x.shape}, {y.shape}")
    scales = scales or num_scales(*x.shape[2:])
    if min(x.shape[2:]) // 2 ** (scales - 1) < WINDOW_SIZE:
        raise ValueError(
            f"{scales} scales need images of at least "
            f"{WINDOW_SIZE * 2 ** (scales - 1)} px, got {tuple(x.shape[2:])}"
        )
    weights = scale_weights(scales).tolist()
    window = gaussian_window().to(device=x.device, dtype=dtype)
    result = torch.ones(x.shape[:2], dtype=torch.float64, device=x.device)  # (B, C)
    for j in range(scales):
        ssim, cs = _ssim_cs(x, y, window, data_range)
        term = ssim if j == scales - 1 else cs
        result = result * term.to(torch.float64).clamp(min=0.0) ** weights[j]
        if j < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result.mean(dim=1)


def random_pairs(count: int, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`num_pairs` index pairs (a, b), a ≠ b, drawn uniformly from `count` images."""
    if count < 2:
        raise ValueError(f"need at least 2 images to form pairs, got {count}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, count, size=num_pairs)
    b = (a + rng.integers(1, count, size=num_pairs)) % count
    return a, b


def msssim_diversity(
    images: torch.Tensor | np.ndarray, num_pairs: int = 1000, seed: int = 0, batch_size: int = 256
) -> float:
    """Mean MS-SSIM over `num_pairs` random pairs of distinct uint8 images (N, C, H, W)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    a, b = random_pairs(len(x), num_pairs, seed)
    total = 0.0
    for start in range(0, num_pairs, batch_size):
        ia, ib = a[start : start + batch_size], b[start : start + batch_size]
        total += ms_ssim(x[ia], x[ib]).sum().item()
    return total / num_pairs


def diversity_metrics(
    generated: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    num_pairs: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """{"msssim": of the generated images, "msssim_real": of the reference (real) images}."""
    return {
        "msssim": msssim_diversity(generated, num_pairs, seed),
        "msssim_real": msssim_diversity(reference, num_pairs, seed),
    }
