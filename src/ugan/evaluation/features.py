"""The feature extractors that IS / FID / KID are computed on, as torch-fidelity sees them.

No Inception weights can be downloaded here, so the small CNN of `ugan.nets.classifier` stands in
for Inception: its logits feed the Inception Score, its 128-d penultimate features feed FID and
KID. The classifier is registered with torch-fidelity as the feature extractor
`ugan-classifier` when this module is imported.

Where the user has torch-fidelity's InceptionV3 weights on disk, `feature_extractor="inception"`
scores with torch-fidelity's own `inception-v3-compat` extractor instead (IS from
'logits_unbiased', FID / KID from '2048'; grayscale images are repeated to RGB). torch-fidelity
unpickles that file without the weights-only guard, so opening it loads the user's file with
`weights_only=True` first and hands torch-fidelity a copy holding nothing but tensors. Nothing
is ever downloaded: without the file the error says where to get it and which key to set.

A classifier trained on unlabelled data predicts image rotations (`objective: rotation`, see
`ugan.training.classifier`): its features still feed FID / KID, but its posteriors are over four
rotations, not classes, so it gives no Inception Score (`OpenedWeights.isc_unavailable` says why).

`get_feature_extractor(name)` is how `ugan.evaluation.fidelity` drives either one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import create_feature_extractor

from ugan.config.schema import INCEPTION_WEIGHTS_HELP
from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import CheckpointError, InputError, InputMissingError
from ugan.core.io import file_digest
from ugan.data.pixels import to_float
from ugan.nets.classifier import load_classifier

EXTRACTOR_NAME = "ugan-classifier"
# Bumped whenever what the extractor computes changes, so older cache files are never reused
# (2: the classifier's inference copy, batch norm folded: the same features up to rounding).
EXTRACTOR_VERSION = 2
FEATURE_LOGITS = "logits"  # (N, num_classes): the Inception Score's class posteriors
FEATURE_EMBEDDING = "features"  # (N, 128): FID / KID


class FidelityInputError(InputError):
    """Images handed to the fidelity metrics are not what they must be."""


class FidelityWeightsError(InputError):
    """The feature extractor's weights file is not one its network can load."""


# -- the project's classifier as a torch-fidelity feature extractor ----------------------------


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor around `ugan.nets.classifier.Classifier`.

    forward: uint8 (N, C, H, W) in [0, 255] → tuple of float32 tensors in the order of
    `features_list`, drawn from "logits" (N, num_classes) and "features" (N, 128).
    The classifier checkpoint comes through `feature_extractor_weights_path`; there is no
    download fallback.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(
                f"feature extractor {name!r} needs feature_extractor_weights_path (a classifier "
                "checkpoint); it never downloads weights"
            )
        # Scoring only: batch norm folded into the convs, channels_last (~2x on the CPU).
        self.classifier = load_classifier(feature_extractor_weights_path).for_inference()
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return FEATURE_LOGITS, FEATURE_EMBEDDING

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {
            "isc": FEATURE_LOGITS,
            "fid": FEATURE_EMBEDDING,
            "kid": FEATURE_EMBEDDING,
            "prc": FEATURE_EMBEDDING,
        }[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, x):
        channels = self.classifier.channels
        if not torch.is_tensor(x) or x.dtype != torch.uint8:
            raise FidelityInputError(
                f"expected a uint8 image batch, got {type(x).__name__} {getattr(x, 'dtype', '')}"
            )
        if x.dim() != 4 or x.shape[1] != channels:
            raise FidelityInputError(
                f"expected a batch of shape (N, {channels}, H, W), got {tuple(x.shape)}"
            )
        embedding = self.classifier.features(to_float(x))
        computed = {FEATURE_EMBEDDING: embedding}
        if FEATURE_LOGITS in self.features_list:
            computed[FEATURE_LOGITS] = self.classifier.head(embedding)
        return tuple(computed[name].to(torch.float32) for name in self.features_list)


def _register_extractor() -> None:
    registered = FEATURE_EXTRACTORS_REGISTRY.get(EXTRACTOR_NAME)
    if registered is None:
        register_feature_extractor(EXTRACTOR_NAME, ClassifierFeatureExtractor)
    elif registered is not ClassifierFeatureExtractor:  # this module was reloaded
        FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR_NAME] = ClassifierFeatureExtractor


_register_extractor()


# -- the feature extractors an evaluator can drive ---------------------------------------------

INCEPTION_NAME = "inception-v3-compat"  # torch-fidelity's TF-1.x-compatible InceptionV3


@dataclass(frozen=True)
class OpenedWeights:
    loaded: Path  # the file torch-fidelity loads
    sha256: str  # of the user's file: part of the reference cache name
    input_channels: int  # channels the network takes
    accepted_channels: tuple[int, ...]  # image channels it can score (1 → repeated when 3)
    isc_unavailable: str | None = None  # why this network gives no Inception Score, if it doesn't


@dataclass(frozen=True)
class FeatureExtractorKind:
    """How the evaluator drives one torch-fidelity feature extractor."""

    name: str  # in torch-fidelity's registry
    tag: str  # in cache names
    isc_layer: str
    fid_layer: str  # FID and KID
    version: int  # bumped whenever what it computes changes, so old caches are not reused
    open: Callable[[Path, Path], OpenedWeights]  # (user's weights, private folder) → opened


# What the report prints for a rotation-trained network in place of an Inception Score.
ISC_UNAVAILABLE_ROTATION = (
    "not available for unlabelled data: the feature network was trained to predict image "
    "rotations (no class labels), so its posteriors are over 4 rotations, not classes, and an "
    "Inception Score of them would measure nothing; FID / KID use its features"
)


def _open_classifier(path: Path, workdir: Path) -> OpenedWeights:
    classifier = load_classifier(path, device="cpu")
    channels = classifier.channels
    reason = None if classifier.objective == "labels" else ISC_UNAVAILABLE_ROTATION
    return OpenedWeights(path, file_digest(path), channels, (channels,), reason)


def _open_inception(path: Path, workdir: Path) -> OpenedWeights:
    """Load the user's file safely, keep its tensors in a private copy, and prove torch-fidelity's
    InceptionV3 loads that copy (strictly: every key, every shape)."""
    if not path.is_file():
        raise InputMissingError(
            f"eval.weights_path {path} does not exist. {INCEPTION_WEIGHTS_HELP}"
        )
    try:
        state = load_checkpoint(path)  # weights_only=True: tensors and plain data, never code
    except CheckpointError as exc:
        raise FidelityWeightsError(f"eval.weights_path: {exc}. {INCEPTION_WEIGHTS_HELP}") from None
    if not all(torch.is_tensor(v) for v in state.values()):
        raise FidelityWeightsError(
            f"eval.weights_path {path}: expected a state dict of tensors (InceptionV3 weights). "
            f"{INCEPTION_WEIGHTS_HELP}"
        )
    loaded = workdir / "inception-weights.pt"
    save_checkpoint(loaded, dict(state))
    try:
        create_feature_extractor(
            INCEPTION_NAME, ["2048"], cuda=False, feature_extractor_weights_path=str(loaded)
        )
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:2]
        raise FidelityWeightsError(
            f"eval.weights_path {path}: torch-fidelity's {INCEPTION_NAME} cannot load it "
            f"({' '.join(first)}). {INCEPTION_WEIGHTS_HELP}"
        ) from None
    return OpenedWeights(loaded, file_digest(path), 3, (3, 1))


FEATURE_EXTRACTORS: dict[str, FeatureExtractorKind] = {
    "classifier": FeatureExtractorKind(
        name=EXTRACTOR_NAME,
        tag="clf",
        isc_layer=FEATURE_LOGITS,
        fid_layer=FEATURE_EMBEDDING,
        version=EXTRACTOR_VERSION,
        open=_open_classifier,
    ),
    "inception": FeatureExtractorKind(
        name=INCEPTION_NAME,
        tag="inc",
        isc_layer="logits_unbiased",  # (N, 1008) logits without the fc bias
        fid_layer="2048",  # (N, 2048) pool features
        version=1,
        open=_open_inception,
    ),
}


def get_feature_extractor(name: str) -> FeatureExtractorKind:
    try:
        return FEATURE_EXTRACTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown feature extractor {name!r}; valid ones are {sorted(FEATURE_EXTRACTORS)}"
        ) from None
