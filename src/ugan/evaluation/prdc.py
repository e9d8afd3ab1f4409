"""Precision, recall, density and coverage of generated images, and what a score was scored with.

Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020)
compare the generated set with the real one through k-nearest-neighbour balls in feature space:
with B(x, r) the ball around x reaching its k-th nearest neighbour (of its own set),

    precision = 1/M Σ_j 1[Y_j ∈ ∪_i B(X_i, NND_k(X_i))]      (fakes on the real manifold)
    recall    = 1/N Σ_i 1[X_i ∈ ∪_j B(Y_j, NND_k(Y_j))]      (reals on the fake manifold)
    density   = 1/(kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))]   (≈ 1 when fakes are like reals)
    coverage  = 1/N Σ_i 1[∃ j: Y_j ∈ B(X_i, NND_k(X_i))]     (real balls holding a fake)

for N real features X and M generated features Y. All four come from the `prdc` package (the
reference implementation by Naeem et al.): torch-fidelity 0.4 gives precision and recall only
(`prc`), and computing the other two apart would build the same k-NN radii twice, with another
tie rule (torch-fidelity counts a distance equal to the radius as inside, prdc does not).

The features are the ones FID and KID are computed on: `FidelityEvaluator.features`, the
registered feature network's FID layer (the classifier's 128-d penultimate layer by default),
extracted by torch-fidelity's own loop. prdc holds an N × M distance matrix in memory (float64):
fine for the thousands of samples evaluated here, not for 50,000.

`scoring_record` is what every metric row carries so that scores are compared only when they
are comparable: the SHA-256 of the feature network's weights file, the sample counts and the
feature dimension. FID estimates two d × d covariances; with N ≤ d samples a covariance has rank
at most N − 1 < d (singular), and the number that comes out measures the sample count as much
as the generator: `fid_singular` says so (the report prints it instead of the FID).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import prdc
import torch

from ugan.core.errors import ConfigError
from ugan.evaluation.fidelity import FidelityEvaluator

PRDC_KEYS = ("precision", "recall", "density", "coverage")
# The columns of every fidelity.csv row that say what the row's numbers were scored with.
SCORING_KEYS = ("num_samples", "num_reference", "feature_dim", "feature_sha256")


def check_nearest_k(nearest_k: int, *counts: int) -> None:
    """ConfigError naming eval.nearest_k unless 1 ≤ k < every count (a k-NN radius needs k other
    samples of the same set)."""
    smallest = min(counts)
    if not 1 <= nearest_k < smallest:
        raise ConfigError(
            f"eval.nearest_k: must be an integer from 1 to {smallest - 1} (fewer than the "
            f"{smallest} samples of the smaller set scored), got {nearest_k}"
        )


def prdc_of_features(real: np.ndarray, fake: np.ndarray, nearest_k: int) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of `fake` (M, d) against `real` (N, d)."""
    real = np.asarray(real, dtype=np.float32)
    fake = np.asarray(fake, dtype=np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"expected two (n, d) feature arrays of the same d, got {real.shape} and {fake.shape}"
        )
    check_nearest_k(nearest_k, len(real), len(fake))
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the two counts
        found = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=nearest_k)
    return {key: float(found[key]) for key in PRDC_KEYS}


class PRDCEvaluator:
    """Precision / recall / density / coverage of generated images against the reference of
    `evaluator` (its held-out images), on the features FID uses; the reference features are
    extracted once."""

    def __init__(self, evaluator: FidelityEvaluator, nearest_k: int):
        self.evaluator = evaluator
        self.nearest_k = int(nearest_k)
        check_nearest_k(self.nearest_k, len(evaluator.reference))
        self.reference = evaluator.features(evaluator.reference).numpy()
        self.feature_dim = int(self.reference.shape[1])

    def __call__(self, generated: torch.Tensor) -> dict[str, float]:
        fake = self.evaluator.features(generated).numpy()
        return prdc_of_features(self.reference, fake, self.nearest_k)

    def scoring_record(self, num_samples: int) -> dict:
        """The SCORING_KEYS of rows scored on `num_samples` generated images."""
        return scoring_record(
            self.evaluator.weights_sha256, num_samples, len(self.reference), self.feature_dim
        )


def scoring_record(sha256: str, num_samples: int, num_reference: int, feature_dim: int) -> dict:
    return {
        "num_samples": int(num_samples),
        "num_reference": int(num_reference),
        "feature_dim": int(feature_dim),
        "feature_sha256": str(sha256),
    }


def fid_singular(num_samples: int, num_reference: int, feature_dim: int) -> str | None:
    """Why FID is not an honest number at these sample counts (a singular covariance), or None."""
    n = min(num_samples, num_reference)
    if n > feature_dim:
        return None
    which = "generated" if num_samples <= num_reference else "reference"
    return (
        f"N={n} ≤ d={feature_dim}: the {which} covariance is singular (rank ≤ N − 1 < d), so "
        "FID measures the sample count more than the generator"
    )
