"""The mode-coverage benchmarks, chosen by name: their data, nets, sample pictures and scores.

- `ring8`, `grid25`: 2-D Gaussian mixtures (`ugan.data.toy`) with the MLP nets of GAAN Table 1
  (3 hidden layers of 128, a 2-d latent). The points are scaled by 1 / (2 · `extent`) into
  [-½, ½], inside the range of a tanh generator (tanh is sigmoid rescaled, (tanh(a) + 1) / 2 =
  sigmoid(2a), so this is GAAN's sigmoid output up to an affine map, and the VAE's BCE applies
  unchanged). The margin keeps the outer modes off tanh's flat ends: scaled to [-1, 1] the outer
  grid25 modes sit at ±0.94, and generators stuck in saturation at the box's edges.
  Scored by modes covered, registered points and TV to uniform (`ugan.evaluation.modes`).
- `stacked-mnist`: three prepared MNIST digits in the RGB channels (1,000 modes), built from the
  prepared digits (`ugan.data.stacked`), with the paper's conv nets at 3 channels, or (`nets:
  unrolled-k4 | unrolled-k2`) with Unrolled GAN's low-capacity G and its K/4 or K/2
  discriminator, as GAAN Table 3 (`ugan.nets.unrolled`; z of 256). Scored by the
  pipeline's digit classifier per channel (modes covered, KL to uniform) and MS-SSIM diversity.

Each benchmark also scores real data the same way (`reference`): the value a perfect generator
would get with the same sample count, printed beside every method's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ugan.config.schema import ModeBenchmarkParams, ModelParams
from ugan.core.errors import InputError
from ugan.data.images import save_grid
from ugan.data.pixels import to_uint8
from ugan.data.prepared import HELDOUT, TRAIN, load_prepared
from ugan.data.stacked import stack_digits, stacked_prepared
from ugan.data.toy import EVAL_SAMPLES, TRAIN_POINTS, GaussianMixture2D, make_mixture
from ugan.evaluation.diversity import msssim_diversity
from ugan.evaluation.modes import (
    MIN_MODE_COUNT,
    classifier_labeller,
    stacked_mode_metrics,
    toy_mode_metrics,
)
from ugan.modebench.scatter import save_scatter
from ugan.nets.arch import CRITIC_WIDTHS, UNROLLED_NETS, ArchConfig, UnrolledConfig
from ugan.nets.classifier import load_classifier
from ugan.nets.mlp import MLPConfig

DATA_SEED = 0  # the benchmark's data is fixed; the seeds of a benchmark vary the training
MSSSIM_PAIRS = 1000


@dataclass(frozen=True)
class Inputs:
    """Files of the pipeline a benchmark may read."""

    prepared: Path = Path("data/prepared/dataset.npz")
    classifier: Path = Path("models/classifier.pt")


@dataclass
class BenchData:
    """What `train_gan` and the pretraining loops read: `.train` and `.heldout` as
    (x, labels), x uint8 images or float points (in [-1, 1] unless `mlp.output` is identity)."""

    train: tuple[np.ndarray, np.ndarray]
    heldout: tuple[np.ndarray, np.ndarray]
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PaperFigure:
    """A published figure for a (method, loss) of ours: where from, and its numbers."""

    source: str
    label: str
    values: dict[str, str]


def _figure(source: str, label: str, **values: str) -> PaperFigure:
    return PaperFigure(source, label, values)


# Which way each score of any benchmark is better (a benchmark's own: `Benchmark.higher_is_better`).
HIGHER_IS_BETTER = {
    "modes_covered": True,
    "registered_points": True,
    "registered_fraction": True,
    "mode_tv": False,
    "kl_uniform": False,
    "msssim": False,
    "confident": True,
}


class Benchmark:
    name: str
    metrics: tuple[str, ...]  # the scores, in table order
    paper_source: str = ""
    paper: dict[tuple[str, str], PaperFigure] = {}  # (method, loss) → figure

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {metric: HIGHER_IS_BETTER[metric] for metric in self.metrics}

    def bound(self, entry: ModeBenchmarkParams) -> Benchmark:
        """This benchmark as `entry` configures it (its scoring and pictures included)."""
        return self

    def data(self, entry: ModeBenchmarkParams, inputs: Inputs) -> BenchData: ...
    def arch(self, entry: ModeBenchmarkParams, model: ModelParams): ...
    def render(self, samples: torch.Tensor, path: Path) -> Path: ...
    def score(self, samples: torch.Tensor, inputs: Inputs) -> dict[str, float]: ...
    def reference(
        self, entry: ModeBenchmarkParams, data: BenchData, inputs: Inputs
    ) -> dict[str, float]: ...


# The paper's TV columns ("TV (True)", "TV (Differential)") are DAN's (its ref. [17]), whose
# definitions GAAN does not state; GAN's 1.00 there is out of reach of our TV (the mode
# histogram's to uniform, at most 1 − 1/K = 0.96), so no paper TV is placed beside ours.
GRID25_PAPER = (
    "GAAN (Tran et al. 2018) Table 2, mean ± sd of 8 runs, 2,000 samples; its TV columns follow "
    "DAN's definitions, which GAAN does not state, and are not comparable with ours (left out)"
)


def _stacked_figures(critic: str, methods: dict[str, tuple[str, str]]) -> dict:
    """GAAN Table 3's column for one critic: (method, loss) → modes covered and KL."""
    source = (
        f"GAAN (Tran et al. 2018) Table 3, MNIST-1K with the {critic} discriminator of Unrolled "
        "GAN, 25,600 samples"
    )
    keys = {"GAN": ("gan", "ns"), "WGAN-GP": ("gan", "wgan-gp"), "GAAN": ("gaan", "ns")}
    return {
        keys[label]: _figure(source, label, modes_covered=modes, kl_uniform=kl)
        for label, (modes, kl) in methods.items()
    }


# Stacked MNIST's figures by the critic the nets have (`nets: dcgan` is set beside K/2's)
STACKED_FIGURES = {
    "K/4": _stacked_figures(
        "K/4",
        {
            "GAN": ("30.6 ± 20.7", "5.99 ± 0.04"),
            "WGAN-GP": ("640.1 ± 136.3", "1.97 ± 0.70"),
            "GAAN": ("859.5 ± 68.7", "1.04 ± 0.29"),
        },
    ),
    "K/2": _stacked_figures(
        "K/2",
        {
            "GAN": ("628.0 ± 140.9", "2.58 ± 0.75"),
            "WGAN-GP": ("772.4 ± 146.5", "1.35 ± 0.55"),
            "GAAN": ("917.9 ± 69.6", "1.06 ± 0.23"),
        },
    ),
}


class MixtureBenchmark(Benchmark):
    metrics = ("modes_covered", "registered_points", "registered_fraction", "mode_tv")

    def __init__(self, name: str, paper: dict | None = None, source: str = ""):
        self.name = name
        self.mixture: GaussianMixture2D = make_mixture(name)
        self.paper = paper or {}
        self.paper_source = source
        self.raw = False  # the nets see the mixture's own coordinates (a linear output)

    def bound(self, entry: ModeBenchmarkParams) -> MixtureBenchmark:
        bound = copy.copy(self)
        bound.raw = entry.mlp.output == "identity"
        return bound

    def _scaled(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        points, modes = self.mixture.sample_with_modes(count, seed)
        return (points / self.scale).astype(np.float32), modes

    def data(self, entry: ModeBenchmarkParams, inputs: Inputs) -> BenchData:
        return BenchData(
            train=self._scaled(TRAIN_POINTS, DATA_SEED),
            heldout=self._scaled(EVAL_SAMPLES, DATA_SEED + 1),
            metadata={"mixture": self.name, "points": TRAIN_POINTS, "scale": self.scale},
        )

    @property
    def scale(self) -> float:
        """Mixture coordinates = net coordinates × scale: under a tanh output the mixture's
        extent maps to ±0.5 of its range; a linear output (`mlp.output: identity`, as Unrolled
        GAN's ring, Metz et al. 2016 App. A) sees the mixture as it is."""
        return 1.0 if self.raw else 2.0 * self.mixture.extent

    def arch(self, entry: ModeBenchmarkParams, model: ModelParams) -> MLPConfig:
        return MLPConfig(data_dim=2, **entry.mlp.model_dump())

    def render(self, samples: torch.Tensor, path: Path) -> Path:
        return save_scatter(samples.detach().cpu().numpy() * self.scale, self.mixture, path)

    def score(self, samples: torch.Tensor, inputs: Inputs) -> dict[str, float]:
        # GAAN's "at least 20 registered of 2,000" is 1 % of the samples: kept as a share when
        # another sample count is scored.
        min_count = max(1, math.ceil(MIN_MODE_COUNT * len(samples) / EVAL_SAMPLES))
        points = samples.detach().cpu().numpy() * self.scale
        return toy_mode_metrics(points, self.mixture, min_count)

    def reference(self, entry, data: BenchData, inputs: Inputs) -> dict[str, float]:
        points, _ = self._scaled(entry.num_samples, DATA_SEED + 2)
        return self.score(torch.as_tensor(points), inputs)


class StackedMNISTBenchmark(Benchmark):
    name = "stacked-mnist"
    # confident: whether the modes are read from digits at all (`ugan.evaluation.modes`)
    metrics = ("modes_covered", "kl_uniform", "msssim", "confident")

    def __init__(self) -> None:
        self._set_paper("K/2")
        # One labeller per classifier file version: a benchmark object lives for the process,
        # and a retrained (or different) classifier must never be scored by a stale one.
        self._labellers: dict[tuple[str, int], Callable] = {}

    def _set_paper(self, critic: str) -> None:
        self.paper = STACKED_FIGURES[critic]
        self.paper_source = next(iter(self.paper.values())).source

    def bound(self, entry: ModeBenchmarkParams) -> StackedMNISTBenchmark:
        """Beside the figures of the critic `entry.nets` has (K/4 or K/2)."""
        bound = copy.copy(self)  # the labellers stay shared
        bound._set_paper(UNROLLED_NETS.get(entry.nets, "K/2"))
        return bound

    def data(self, entry: ModeBenchmarkParams, inputs: Inputs) -> BenchData:
        digits = load_prepared(inputs.prepared)
        stacked = stacked_prepared(digits, entry.train_images, entry.num_samples, DATA_SEED)
        return BenchData(
            train=stacked.subset(TRAIN), heldout=stacked.subset(HELDOUT), metadata=stacked.metadata
        )

    def arch(self, entry: ModeBenchmarkParams, model: ModelParams) -> ArchConfig | UnrolledConfig:
        if entry.nets in UNROLLED_NETS:
            critic_width = CRITIC_WIDTHS[UNROLLED_NETS[entry.nets]]
            return UnrolledConfig(critic_width=critic_width, init=entry.unrolled.init)
        return ArchConfig(
            image_size=28,
            channels=3,
            latent_dim=model.latent_dim,
            base_channels=entry.base_channels,
            leaky_slope=model.leaky_slope,
            dropout=model.dropout,
        )

    def render(self, samples: torch.Tensor, path: Path) -> Path:
        return save_grid(samples[:64], path)

    def _classify(self, inputs: Inputs) -> Callable:
        if not inputs.classifier.is_file():
            raise FileNotFoundError(
                f"{inputs.classifier} does not exist: stacked-mnist is scored by the "
                "pipeline's digit classifier (stage train_classifier)"
            )
        key = (str(inputs.classifier.resolve()), inputs.classifier.stat().st_mtime_ns)
        if key not in self._labellers:
            classifier = load_classifier(inputs.classifier)
            if classifier.objective != "labels":
                raise InputError(
                    f"{inputs.classifier} predicts image {classifier.objective}s, not digits: "
                    "stacked-mnist needs the classifier of labelled MNIST (data.source mnist5k "
                    "or mnist-idx)"
                )
            labeller = classifier_labeller(classifier.for_inference(), probabilities=True)
            self._labellers[key] = labeller
        return self._labellers[key]

    def _score_uint8(self, images: np.ndarray | torch.Tensor, inputs: Inputs) -> dict:
        images = torch.as_tensor(images)
        return {
            **stacked_mode_metrics(images, self._classify(inputs)),
            "msssim": msssim_diversity(images, MSSSIM_PAIRS, seed=0),
        }

    def score(self, samples: torch.Tensor, inputs: Inputs) -> dict[str, float]:
        return self._score_uint8(to_uint8(samples.detach().cpu()), inputs)

    def reference(self, entry, data: BenchData, inputs: Inputs) -> dict[str, float]:
        digits = load_prepared(inputs.prepared)
        images, _ = stack_digits(*digits.heldout, entry.num_samples, DATA_SEED + 2)
        return self._score_uint8(images, inputs)


BENCHMARKS: dict[str, Benchmark] = {
    "ring8": MixtureBenchmark("ring8"),  # RFGAN §4.1 shows it as a figure only: no numbers
    "grid25": MixtureBenchmark(
        "grid25",
        paper={
            ("gan", "ns"): _figure(
                GRID25_PAPER,
                "GAN",
                modes_covered="21.50 ± 2.00",
                registered_points="1875.63 ± 42.53",
            ),
            ("gan", "wgan-gp"): _figure(
                GRID25_PAPER,
                "WGAN-GP",
                modes_covered="24.04 ± 1.16",
                registered_points="1766.25 ± 79.48",
            ),
            ("gaan", "ns"): _figure(
                GRID25_PAPER,
                "GAAN₂",
                modes_covered="25.00 ± 0.00",
                registered_points="1827.38 ± 25.60",
            ),
        },
        source=GRID25_PAPER,
    ),
    "stacked-mnist": StackedMNISTBenchmark(),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; valid: {sorted(BENCHMARKS)}") from None
