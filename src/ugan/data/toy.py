"""2-D Gaussian mixtures: the synthetic mode-collapse benchmarks of the papers, chosen by name.

- `ring8`: 8 equally weighted isotropic Gaussians whose means lie evenly on a circle of radius 2
  (the ring of Metz et al. 2016, "Unrolled GANs", which RFGAN §4.1 trains on), σ = 0.1 as RFGAN
  §4.1 states ("each distribution has standard deviation = 0.1").
- `grid25`: 25 equally weighted isotropic Gaussians with means on the 5×5 grid
  {−4, −2, 0, 2, 4}² (spacing 2; GAAN §4.1 "25 Gaussian modes in grid layout similar to [ALI]"),
  σ = 0.05. GAAN's text says only that a mode "is measured by its mean and variance of 0.01";
  the grid means and σ = 0.05 are the ones of the authors' released code
  (tntrung/gan, `gaan_toy2d/utils_toy2d.py`: `range(-4, 5, 2)`, `0.05 ** 2 * eye`).

A generated point is *registered* to a mode (a "high-quality" sample in Metz et al., VEEGAN and
GAAN) when its Euclidean distance to that mode's mean is at most `REGISTER_SIGMAS` = 3 σ. In 2-D
the distance of a true sample to its mean is Rayleigh-distributed, so a sample of the true
mixture is registered with probability 1 − exp(−3²/2) ≈ 0.9889 (`true_registered_fraction`).

GAAN's MLP generator ends in a sigmoid and the released code rescales the data to [0, 1]
before training; `to_unit` / `from_unit` are that affine map with a fixed half-width
`extent` = max |mean coordinate| + 5 σ (a true sample leaves it with probability < 1e-5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

REGISTER_SIGMAS = 3.0  # a point within 3 σ of a mean is registered to that mode
EXTENT_SIGMAS = 5.0  # margin of the [0, 1] box around the outermost means, in σ
TRAIN_POINTS = 50_000  # GAAN §4.1: "Our dataset contains 50K training points"
EVAL_SAMPLES = 2_000  # GAAN §4.1: "we draw 2K generated samples for testing"


@dataclass(frozen=True)
class GaussianMixture2D:
    """Equally weighted isotropic Gaussians N(centre_k, σ² I) in the plane."""

    name: str
    centres: np.ndarray = field(repr=False)  # float64 (K, 2)
    sigma: float

    def __post_init__(self) -> None:
        centres = np.asarray(self.centres, dtype=np.float64)
        if centres.ndim != 2 or centres.shape[1] != 2 or len(centres) == 0:
            raise ValueError(f"{self.name}: centres must be (K, 2), got {centres.shape}")
        if not self.sigma > 0:
            raise ValueError(f"{self.name}: sigma must be > 0, got {self.sigma}")
        centres.setflags(write=False)
        object.__setattr__(self, "centres", centres)

    @property
    def num_modes(self) -> int:
        return len(self.centres)

    @property
    def register_radius(self) -> float:
        """Distance to a mean within which a point counts as a sample of that mode."""
        return REGISTER_SIGMAS * self.sigma

    @property
    def extent(self) -> float:
        """Half-width of the square that `to_unit` maps onto [0, 1]²."""
        return float(np.abs(self.centres).max()) + EXTENT_SIGMAS * self.sigma

    def sample_with_modes(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` points, float32 (count, 2), and the mode each was drawn from, int64 (count,).
        The same seed gives the same points."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        rng = np.random.default_rng(seed)
        modes = rng.integers(0, self.num_modes, size=count)
        points = self.centres[modes] + self.sigma * rng.standard_normal((count, 2))
        return points.astype(np.float32), modes.astype(np.int64)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """`count` points of the mixture, float32 (count, 2)."""
        return self.sample_with_modes(count, seed)[0]

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        """Mixture coordinates → [0, 1]² (the range of a sigmoid generator)."""
        return (np.asarray(points) / self.extent + 1.0) / 2.0

    def from_unit(self, points: np.ndarray) -> np.ndarray:
        """[0, 1]² → mixture coordinates; the inverse of `to_unit`."""
        return (np.asarray(points) * 2.0 - 1.0) * self.extent


def true_registered_fraction(register_sigmas: float = REGISTER_SIGMAS) -> float:
    """P(‖x − μ‖ ≤ k σ) for x ~ N(μ, σ² I₂): the Rayleigh CDF 1 − exp(−k²/2)."""
    return 1.0 - math.exp(-(register_sigmas**2) / 2.0)


def ring8(sigma: float = 0.1, radius: float = 2.0) -> GaussianMixture2D:
    """8 modes evenly on a circle (angles 0, π/4, …, 7π/4)."""
    angles = 2.0 * np.pi * np.arange(8) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture2D("ring8", centres, sigma)


def grid25(sigma: float = 0.05, spacing: float = 2.0) -> GaussianMixture2D:
    """25 modes on a 5×5 grid centred on the origin, row-major from (−2s, −2s) to (2s, 2s)."""
    axis = spacing * (np.arange(5) - 2.0)
    xs, ys = np.meshgrid(axis, axis, indexing="ij")
    return GaussianMixture2D("grid25", np.stack([xs.ravel(), ys.ravel()], axis=1), sigma)


MIXTURES: dict[str, Callable[..., GaussianMixture2D]] = {"ring8": ring8, "grid25": grid25}


def make_mixture(name: str, **overrides: float) -> GaussianMixture2D:
    """The mixture called `name`, with e.g. `sigma=` / `radius=` / `spacing=` overridden."""
    if name not in MIXTURES:
        raise ValueError(f"unknown 2-D mixture {name!r}; valid names are {sorted(MIXTURES)}")
    try:
        return MIXTURES[name](**overrides)
    except TypeError as error:
        raise ValueError(
            f"mixture {name!r}: bad parameters {sorted(overrides)}: {error}"
        ) from error
