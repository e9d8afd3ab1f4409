"""Mode coverage: how many of a benchmark's known modes a generator reaches, and how evenly.

2-D Gaussian mixtures (GAAN §4.1, Table 2; Metz et al. 2016):
- a generated point is *registered* to a mode when it lies within `mixture.register_radius`
  (3 σ) of that mode's mean; otherwise it is off-mode (a low-quality sample);
- `registered_points`: how many of the N generated points are registered (GAAN reports them
  among 2,000 samples), `registered_fraction` = registered_points / N;
- `modes_covered`: modes with at least `MIN_MODE_COUNT` = 20 registered points (GAAN: "a mode is
  collapsed if there are less than 20 generated samples registered into this mode");
- `mode_tv`: total variation ½ Σ_k |p_k − 1/K| between the histogram of registered points over
  the K modes (normalised over the registered points, so it measures mode *balance*; quality is
  `registered_fraction`) and the uniform distribution. 0 for perfect balance, 1 − 1/K for all
  points in one mode; with no registered point at all it is also 1 − 1/K. A finite sample of
  the true mixture is not exactly 0: about ½ K √(2 / π) √((1/K)(1 − 1/K) / R) for R registered
  points (≈ 0.04 for K = 25, R = 2,000).

Stacked MNIST (1,000 modes, GAAN §4.2, Metz et al. 2016): a classifier labels each colour
channel with a digit; the mode of an image is 100·d_R + 10·d_G + d_B. `modes_covered` counts modes
with at least one sample; `kl_uniform` = KL(p ‖ uniform) = Σ_k p_k log(K p_k) in nats, with
0 log 0 = 0 (0 for a perfectly uniform histogram, log K = 6.91 for a single mode). Neither asks
whether a channel holds a digit at all: the argmax of a blurry blob is a digit too, and blurred
uniform noise covers ~320 modes. So a labeller that gives the classifier's probabilities also
yields `confident`: the fraction of images whose three digits each get p ≥ `CONFIDENT_PROB`
(real stacked digits 0.88 with the pipeline's classifier; blurred noise 0.05).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ugan.data.pixels import to_float
from ugan.data.toy import GaussianMixture2D

MIN_MODE_COUNT = 20
STACKED_MODES = 1000
STACKED_CHANNELS = 3
DIGITS = 10

CONFIDENT_PROB = 0.9  # a channel's digit counts as read when the classifier gives it ≥ this

# uint8 images (M, 1, H, W) → digit labels (M,) in 0..9, or their probabilities (M, 10)
Labeller = Callable[[np.ndarray], np.ndarray | torch.Tensor]


# -- 2-D mixtures -----------------------------------------------------------------------------


def assign_modes(
    points: np.ndarray | torch.Tensor, centres: np.ndarray, radius: float
) -> np.ndarray:
    """Index of the nearest mean for each point within `radius` of it, −1 otherwise; (N,)."""
    x = _as_points(points)
    c = np.asarray(centres, dtype=np.float64)
    distances = np.linalg.norm(x[:, None, :] - c[None, :, :], axis=2)  # (N, K)
    nearest = distances.argmin(axis=1) if len(x) else np.zeros(0, dtype=np.int64)
    within = distances[np.arange(len(x)), nearest] <= radius
    return np.where(within, nearest, -1).astype(np.int64)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """½ Σ |p − q| of two distributions over the same bins."""
    return 0.5 * float(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def tv_to_uniform(counts: np.ndarray) -> float:
    """Total variation between the normalised histogram `counts` and the uniform one; an empty
    histogram is as far as a single mode (1 − 1/K)."""
    counts = np.asarray(counts, dtype=np.float64)
    k = len(counts)
    if counts.sum() == 0:
        return 1.0 - 1.0 / k
    return total_variation(counts / counts.sum(), np.full(k, 1.0 / k))


@dataclass(frozen=True)
class ToyModeReport:
    counts: tuple[int, ...]  # registered points per mode
    num_samples: int
    min_count: int

    @property
    def registered_points(self) -> int:
        return int(sum(self.counts))

    @property
    def registered_fraction(self) -> float:
        return self.registered_points / self.num_samples if self.num_samples else 0.0

    @property
    def modes_covered(self) -> int:
        return int(sum(c >= self.min_count for c in self.counts))

    @property
    def mode_tv(self) -> float:
        return tv_to_uniform(np.array(self.counts))

    def metrics(self) -> dict[str, float]:
        return {
            "modes_covered": float(self.modes_covered),
            "registered_points": float(self.registered_points),
            "registered_fraction": self.registered_fraction,
            "mode_tv": self.mode_tv,
        }


def toy_mode_report(
    points: np.ndarray | torch.Tensor,
    mixture: GaussianMixture2D,
    min_count: int = MIN_MODE_COUNT,
) -> ToyModeReport:
    """Registered points per mode of `mixture` for generated `points` (N, 2) in mixture
    coordinates (map a sigmoid generator's output back with `mixture.from_unit` first)."""
    modes = assign_modes(points, mixture.centres, mixture.register_radius)
    counts = np.bincount(modes[modes >= 0], minlength=mixture.num_modes)
    return ToyModeReport(tuple(int(c) for c in counts), len(modes), min_count)


def toy_mode_metrics(
    points: np.ndarray | torch.Tensor,
    mixture: GaussianMixture2D,
    min_count: int = MIN_MODE_COUNT,
) -> dict[str, float]:
    """{"modes_covered", "registered_points", "registered_fraction", "mode_tv"}."""
    return toy_mode_report(points, mixture, min_count).metrics()


def _as_points(points: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{int((~np.isfinite(x)).any(axis=1).sum())} points are not finite")
    return x


# -- Stacked MNIST ----------------------------------------------------------------------------


def stacked_modes(images: np.ndarray | torch.Tensor, classify: Labeller) -> np.ndarray:
    """uint8 (N, 3, H, W) → mode 100·d_R + 10·d_G + d_B per image, int64 (N,). `classify` labels
    all N·3 channels, as uint8 (N·3, 1, H, W), in one call."""
    return _read_digits(images, classify)[0]


def _read_digits(
    images: np.ndarray | torch.Tensor, classify: Labeller
) -> tuple[np.ndarray, np.ndarray | None]:
    """(modes (N,), each image's least confident channel's probability (N,) or None when
    `classify` gives labels, not probabilities)."""
    x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != STACKED_CHANNELS:
        raise ValueError(
            f"stacked images must be uint8 (N, {STACKED_CHANNELS}, H, W), got {x.dtype} {x.shape}"
        )
    channels = x.reshape(-1, 1, *x.shape[2:])  # (N·3, 1, H, W), R, G, B of image 0 first
    out = classify(channels)
    out = out.cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    confidence = None
    if out.shape == (len(channels), DIGITS):  # probabilities
        digits, confidence = out.argmax(1), out.max(1).reshape(-1, STACKED_CHANNELS).min(1)
    elif out.shape == (len(channels),):
        digits = out
    else:
        raise ValueError(
            f"the classifier returned shape {out.shape} for {len(channels)} channels; "
            f"expected ({len(channels)},) labels or ({len(channels)}, {DIGITS}) probabilities"
        )
    digits = digits.astype(np.int64)
    if len(digits) and (digits.min() < 0 or digits.max() >= DIGITS):
        raise ValueError(
            f"the classifier returned labels in [{digits.min()}, {digits.max()}]; "
            f"expected digits 0..{DIGITS - 1}"
        )
    modes = digits.reshape(-1, STACKED_CHANNELS) @ np.array([100, 10, 1], dtype=np.int64)
    return modes, confidence


def kl_to_uniform(counts: np.ndarray) -> float:
    """KL(p ‖ uniform) in nats for the histogram `counts`, 0 log 0 = 0."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() == 0:
        raise ValueError("KL to uniform of an empty histogram is undefined")
    p = counts[counts > 0] / counts.sum()
    return float(np.sum(p * np.log(p * len(counts))))


def mode_coverage(modes: np.ndarray, num_modes: int = STACKED_MODES) -> dict[str, float]:
    """{"modes_covered": modes with ≥ 1 sample, "kl_uniform": KL(histogram ‖ uniform)}."""
    modes = np.asarray(modes, dtype=np.int64)
    if len(modes) and (modes.min() < 0 or modes.max() >= num_modes):
        raise ValueError(f"modes must lie in [0, {num_modes}), got [{modes.min()}, {modes.max()}]")
    counts = np.bincount(modes, minlength=num_modes)
    return {"modes_covered": float((counts > 0).sum()), "kl_uniform": kl_to_uniform(counts)}


def stacked_mode_metrics(images: np.ndarray | torch.Tensor, classify: Labeller) -> dict[str, float]:
    """Modes covered (of 1,000) and KL to uniform of generated Stacked MNIST images; with a
    labeller of probabilities also `confident` (module docstring)."""
    modes, confidence = _read_digits(images, classify)
    metrics = mode_coverage(modes, STACKED_MODES)
    if confidence is not None:
        metrics["confident"] = float((confidence >= CONFIDENT_PROB).mean()) if len(modes) else 0.0
    return metrics


def classifier_labeller(
    model: torch.nn.Module,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
    probabilities: bool = False,
) -> Labeller:
    """The project's digit classifier (`ugan.nets.classifier`) as a `Labeller`: uint8 images →
    argmax of its logits, or with `probabilities` their softmax (M, 10); eval mode, batches."""

    def read(logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(1) if probabilities else logits.argmax(1)

    empty = np.zeros((0, DIGITS), np.float32) if probabilities else np.zeros(0, dtype=np.int64)

    @torch.inference_mode()
    def classify(images: np.ndarray) -> np.ndarray:
        model.eval()
        x_all = torch.as_tensor(images)
        out = [
            read(model(to_float(x_all[i : i + batch_size]).to(device))).cpu()
            for i in range(0, len(x_all), batch_size)
        ]
        return torch.cat(out).numpy() if out else empty

    return classify
