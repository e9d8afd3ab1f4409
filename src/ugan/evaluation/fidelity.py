"""IS / FID / KID of generated images through torch-fidelity (`calculate_metrics`).

All metric maths is torch-fidelity's own; the feature network is one of
`ugan.evaluation.features` (the project's classifier by default, InceptionV3 from a local
weights file on request).

Reference statistics are computed once per (reference images, feature network file) pair: the
reference is torch-fidelity's `input2` with an `input2_cache_name` built from a SHA-256 of the
reference bytes and of the weights file, so its features (and FID statistics) land in
torch-fidelity's file cache and are reused by every later call, by every evaluator sharing
`cache_dir`, and never when either the images or the weights changed. The generated images
are never cached.

torch-fidelity unpickles its cache files without the weights-only guard; before every call the
evaluator therefore inspects this reference's cache files without unpickling them and refuses
(`FidelityCacheError`) any that would import more than tensors and plain numpy arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from ugan.core.io import file_digest
from ugan.evaluation.features import FidelityInputError, get_feature_extractor

ISC_SPLITS = 10
KID_SUBSETS = 100
KID_DEFAULT_SUBSET_SIZE = 1000  # torch-fidelity's default, clamped to the sample counts
MIN_SAMPLES = ISC_SPLITS  # every IS split needs at least one sample
METRIC_KEYS = ("isc_mean", "isc_std", "fid", "kid_mean", "kid_std")

_TF_KEYS = {
    "isc_mean": torch_fidelity.KEY_METRIC_ISC_MEAN,
    "isc_std": torch_fidelity.KEY_METRIC_ISC_STD,
    "fid": torch_fidelity.KEY_METRIC_FID,
    "kid_mean": torch_fidelity.KEY_METRIC_KID_MEAN,
    "kid_std": torch_fidelity.KEY_METRIC_KID_STD,
}
# Globals a cache file may import: tensors need none; FID statistics are a dict of numpy arrays.
_SAFE_CACHE_GLOBALS = frozenset(
    {
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
    }
)


class FidelityCacheError(RuntimeError):
    """A torch-fidelity cache file would run code (or cannot be inspected) when loaded."""


# -- inputs ------------------------------------------------------------------------------------


class _ImageDataset(Dataset):
    """The torch Dataset torch-fidelity reads: item i is the uint8 (C, H, W) tensor images[i]."""

    def __init__(self, images: torch.Tensor, repeat: int = 1):
        self.images = images
        self.repeat = repeat  # 3: grayscale (1, H, W) → (3, H, W) for an RGB network

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        return image.repeat(self.repeat, 1, 1) if self.repeat > 1 else image


def _as_tensor(images, name: str) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images):
        raise FidelityInputError(
            f"{name}: expected a uint8 torch.Tensor (N, C, H, W), got {type(images).__name__}"
        )
    return images


def validate_images(images: torch.Tensor, *, channels: int, name: str, min_count: int) -> None:
    """Raise FidelityInputError (a ValueError) unless `images` is uint8 (N, channels, H, W), N ≥
    min_count. The message names `name` and what was expected."""
    expected = f"uint8 images of shape (N >= {min_count}, {channels}, H, W) with values 0..255"
    if not torch.is_tensor(images):
        raise FidelityInputError(f"{name}: expected {expected}, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        hint = (
            " (float images in [-1, 1] convert with ugan.data.prepared.to_uint8)"
            if images.is_floating_point()
            else ""
        )
        raise FidelityInputError(f"{name}: expected {expected}, got dtype {images.dtype}{hint}")
    if images.dim() != 4:
        raise FidelityInputError(
            f"{name}: expected {expected}, got a {images.dim()}-D tensor of shape "
            f"{tuple(images.shape)}"
        )
    if images.shape[1] != channels:
        raise FidelityInputError(
            f"{name}: expected {expected}, got {images.shape[1]} channels "
            f"(shape {tuple(images.shape)})"
        )
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise FidelityInputError(f"{name}: expected {expected}, got shape {tuple(images.shape)}")
    if images.shape[0] < min_count:
        raise FidelityInputError(
            f"{name}: expected at least {min_count} samples, got {images.shape[0]}"
        )


def _sha256_tensor(images: torch.Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(f"{images.dtype}:{tuple(images.shape)}:".encode())
    digest.update(np.ascontiguousarray(images.numpy()).tobytes())
    return digest.hexdigest()


# -- the evaluator -----------------------------------------------------------------------------


class FidelityEvaluator:
    """IS / FID / KID of generated images against one fixed reference set.

    The reference features are extracted on the first call and cached (torch-fidelity's file
    cache under `cache_dir`, or a private temporary folder removed with the evaluator when
    `cache_dir` is None); every further call only runs the feature network on the generated
    images. Results are deterministic for the same inputs and `seed` (torch-fidelity's
    `rng_seed`, which draws the IS shuffling and the KID subsets).

    `weights_path` is the feature network's file: the classifier checkpoint for
    `feature_extractor="classifier"`, torch-fidelity's InceptionV3 weights for "inception".
    """

    def __init__(
        self,
        weights_path: str | Path,
        reference: torch.Tensor,
        *,
        feature_extractor: str = "classifier",
        kid_subset_size: int | None = None,
        batch_size: int = 256,
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        seed: int = 0,
    ):
        self.extractor = get_feature_extractor(feature_extractor)
        self.weights_path = Path(weights_path).resolve()
        self._workdir = Path(tempfile.mkdtemp(prefix="ugan-extractor-"))
        self._cleanup_workdir = weakref.finalize(
            self, shutil.rmtree, str(self._workdir), ignore_errors=True
        )
        self.weights = self.extractor.open(self.weights_path, self._workdir)
        self.weights_sha256 = self.weights.sha256
        # None when the network gives an Inception Score; else why not (IS comes back NaN).
        self.isc_unavailable = self.weights.isc_unavailable
        self._loaded_sha256 = file_digest(self.weights.loaded)

        reference = _as_tensor(reference, "reference").detach().cpu().contiguous()
        accepted = self.weights.accepted_channels
        given = reference.shape[1] if reference.dim() == 4 else None
        self.channels = given if given in accepted else accepted[0]
        validate_images(reference, channels=self.channels, name="reference", min_count=MIN_SAMPLES)
        self.repeat = self.weights.input_channels // self.channels
        self.reference = reference
        self.reference_sha256 = _sha256_tensor(reference)

        if kid_subset_size is not None and kid_subset_size < 2:
            raise ValueError(f"kid_subset_size must be at least 2 (or None), got {kid_subset_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.kid_subset_size = kid_subset_size
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._feature_net = None  # built on the first `features` call

        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:index]', got {device!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")

        if cache_dir is None:
            self.cache_root = Path(tempfile.mkdtemp(prefix="ugan-fidelity-"))
            self._cleanup = weakref.finalize(
                self, shutil.rmtree, str(self.cache_root), ignore_errors=True
            )
        else:
            self.cache_root = Path(cache_dir).resolve()
            self.cache_root.mkdir(parents=True, exist_ok=True)
        self.cache_name = (
            f"ugan-ref-{self.reference_sha256[:20]}-{self.extractor.tag}-"
            f"{self.weights_sha256[:20]}-v{self.extractor.version}"
        )

    @property
    def classifier_sha256(self) -> str:
        """The feature network file's SHA-256 (the name predates the inception option)."""
        return self.weights_sha256

    @property
    def reference_cache_files(self) -> list[Path]:
        """This reference's files in torch-fidelity's cache (empty before the first call)."""
        return sorted(self.cache_root.glob(f"{self.cache_name}-*.pt"))

    def _checked(self, images, name: str) -> torch.Tensor:
        """`images` as a contiguous CPU tensor, refused (naming `name`) unless they are uint8
        (N ≥ MIN_SAMPLES, C, H, W) like the reference, and while the weights are unchanged."""
        images = _as_tensor(images, name).detach().cpu().contiguous()
        validate_images(images, channels=self.channels, name=name, min_count=MIN_SAMPLES)
        if images.shape[1:] != self.reference.shape[1:]:
            raise FidelityInputError(
                f"{name}: expected images of shape (N, "
                f"{', '.join(map(str, self.reference.shape[1:]))}) like the reference, got "
                f"{tuple(images.shape)}"
            )
        if file_digest(self.weights.loaded) != self._loaded_sha256:
            raise FidelityCacheError(
                f"feature extractor weights {self.weights.loaded} changed since this evaluator "
                "was built; build a new FidelityEvaluator"
            )
        return images

    def _check_cache(self) -> None:
        for path in self.reference_cache_files:
            try:
                imported = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
            except Exception as exc:
                raise FidelityCacheError(
                    f"fidelity cache file {path} cannot be inspected ({type(exc).__name__}: "
                    f"{exc}); delete it to recompute the reference statistics"
                ) from exc
            unsafe = imported - _SAFE_CACHE_GLOBALS
            if unsafe:
                raise FidelityCacheError(
                    f"fidelity cache file {path} would import {sorted(unsafe)} when loaded; "
                    "refusing to load it (delete it to recompute the reference statistics)"
                )

    def __call__(self, generated: torch.Tensor) -> dict[str, float]:
        """{"isc_mean", "isc_std", "fid", "kid_mean", "kid_std"} of `generated` (uint8
        (N, C, H, W), same C, H, W as the reference) against the reference; the IS keys are
        NaN when the network gives none (`isc_unavailable`)."""
        generated = self._checked(generated, "generated")
        self._check_cache()

        n_gen, n_ref = generated.shape[0], self.reference.shape[0]
        subset = (
            self.kid_subset_size if self.kid_subset_size is not None else (KID_DEFAULT_SUBSET_SIZE)
        )
        subset = min(subset, n_gen, n_ref)

        cuda = self.device.type == "cuda"
        with self._device_context():
            raw = torch_fidelity.calculate_metrics(
                input1=_ImageDataset(generated, self.repeat),
                input2=_ImageDataset(self.reference, self.repeat),
                input2_cache_name=self.cache_name,
                cache=True,
                cache_root=str(self.cache_root),
                cuda=cuda,
                batch_size=self.batch_size,
                isc=self.isc_unavailable is None,
                fid=True,
                kid=True,
                prc=False,
                ppl=False,
                feature_extractor=self.extractor.name,
                feature_layer_isc=self.extractor.isc_layer,
                feature_layer_fid=self.extractor.fid_layer,
                feature_layer_kid=self.extractor.fid_layer,
                feature_extractor_weights_path=str(self.weights.loaded),
                feature_extractor_compile=False,
                isc_splits=ISC_SPLITS,
                kid_subsets=KID_SUBSETS,
                kid_subset_size=subset,
                samples_shuffle=True,
                samples_find_deep=False,
                datasets_download=False,
                rng_seed=self.seed,
                save_cpu_ram=True,
                verbose=False,
            )
        return {key: float(raw.get(_TF_KEYS[key], math.nan)) for key in METRIC_KEYS}

    def _device_context(self):
        """torch-fidelity puts its work on the current CUDA device: make it ours."""
        if self.device.type == "cuda" and self.device.index is not None:
            return torch.cuda.device(self.device.index)
        return contextlib.nullcontext()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, d) float32 features of `images` (uint8, the reference's C, H, W) from the layer
        FID and KID use (`extractor.fid_layer`), extracted by torch-fidelity's own loop, so
        precision / recall / density / coverage (`ugan.evaluation.prdc`) see what FID sees."""
        images = self._checked(images, "images")
        cuda = self.device.type == "cuda"
        with self._device_context():
            if self._feature_net is None:
                self._feature_net = create_feature_extractor(
                    self.extractor.name,
                    [self.extractor.fid_layer],
                    cuda=cuda,
                    feature_extractor_weights_path=str(self.weights.loaded),
                    verbose=False,
                )
            dataset = _ImageDataset(images, self.repeat)
            # save_cpu_ram=True (no loader workers), verbose=False
            found = get_featuresdict_from_dataset(
                dataset, self._feature_net, self.batch_size, cuda, True, False
            )
        return found[self.extractor.fid_layer].to(torch.float32)


def floor_subset(train: torch.Tensor, num_samples: int | None, seed: int) -> torch.Tensor:
    """The `num_samples` training images (a seeded random subset, in index order) that the floor
    is scored with; all of `train` when `num_samples` is None."""
    train = _as_tensor(train, "train")
    if num_samples is None:
        return train
    if not MIN_SAMPLES <= num_samples <= train.shape[0]:
        raise ValueError(
            f"num_samples must be between {MIN_SAMPLES} and the {train.shape[0]} training "
            f"images, got {num_samples}"
        )
    index = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))
    return train[index[:num_samples].sort().values]


def floor_metrics(
    weights_path: str | Path,
    heldout: torch.Tensor,
    train: torch.Tensor,
    *,
    num_samples: int | None = None,
    **kw,
) -> dict[str, float]:
    """Metrics of the training images scored as if generated, against the held-out reference.

    A generator that reproduced its training distribution perfectly would score this, so it is
    the floor for FID / KID (and the real data's IS). `kw` goes to `FidelityEvaluator`; with the
    same `cache_dir` the held-out statistics are shared with the generators' evaluations.
    FID is biased by the sample count: pass `num_samples` (the number of generated images the
    generators are scored with) to score a seeded random subset of `train` of that size.
    """
    evaluator = FidelityEvaluator(weights_path, heldout, **kw)
    return evaluator(floor_subset(train, num_samples, evaluator.seed))
