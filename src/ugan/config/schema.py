"""Typed params: one pydantic model per `params.yaml` section, validated before any work.

Every model forbids unknown keys, so a typo stops the stage with the key's name instead of being
silently ignored (`ugan.config.load` turns pydantic's errors into one `ConfigError` that names
each key). The defaults here equal the values written out in `params.yaml`
(tests/test_config_defaults.py), so leaving a key out of the file changes nothing.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ugan.config import base, checks
from ugan.config.base import LatentPrior, LRDecay, OptimParams, PositiveInt, Probability, Strict
from ugan.config.checks import check_began_keys, check_ema, check_labels, check_method
from ugan.config.methods import BEGANParams, GAANParams, RFGANParams
from ugan.core.errors import ConfigError
from ugan.data.sources import SOURCES
from ugan.methods.catalog import LossName
from ugan.nets.arch import ArchConfig

RUN_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class DataParams(Strict):
    source: base.SourceName = "mnist5k"
    # The files of sources that read from disk. dvc.yaml depends on `${data.path}`, so
    # params.yaml always sets it (data/sources, a folder of the repo, for mnist5k).
    path: Annotated[str | None, Field(validate_default=True)] = None
    image_size: Literal[28, 32, 64] = 28  # when left out: the source's own (28 / 32 / 64)
    labels_from_subfolders: bool = False  # image-folder: class = top-level subfolder
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _size_of_the_source(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "image_size" not in raw:
            source = SOURCES.get(raw.get("source", "mnist5k"))
            if source is not None:
                return {**raw, "image_size": source.image_size}
        return raw

    @field_validator("path")
    @classmethod
    def _path_when_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        source = SOURCES.get(info.data.get("source", ""))
        if source is not None and source.needs_path and not value:
            raise ValueError(
                f"source {info.data['source']!r} reads files from disk: set data.path to "
                f"{source.path_hint}"
            )
        return value

    @field_validator("labels_from_subfolders")
    @classmethod
    def _subfolders_of_a_folder(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("source") != "image-folder":
            raise ValueError("applies to source 'image-folder' only")
        return value


class ModelParams(Strict):
    latent_dim: PositiveInt = 128
    base_channels: PositiveInt = 64
    leaky_slope: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    dropout: Probability = 0.25
    init_std: Annotated[float, Field(gt=0.0)] = 0.02
    conditional: bool = False  # class-conditional G / D / VAE (labels of the prepared data)

    def arch(self, image_size: int, channels: int, num_classes: int = 0) -> ArchConfig:
        if self.conditional and num_classes < 2:
            raise ConfigError(
                "model.conditional: true needs labelled data with at least 2 classes; "
                f"the prepared data has {num_classes}"
            )
        return ArchConfig(
            image_size=image_size,
            channels=channels,
            latent_dim=self.latent_dim,
            base_channels=self.base_channels,
            leaky_slope=self.leaky_slope,
            dropout=self.dropout,
            num_classes=num_classes if self.conditional else 0,
        )


class ClassifierParams(Strict):
    steps: PositiveInt = 600
    batch_size: PositiveInt = 64
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    seed: int = 0
    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] = 0.98


class VAEParams(Strict):
    steps: PositiveInt = 1200
    batch_size: PositiveInt = 64
    optim: OptimParams = OptimParams()
    seed: int = 0
    log_every: PositiveInt = 10
    sample_every: PositiveInt = 300


class DAEParams(Strict):
    """RFGAN's denoising autoencoder, pre-trained by the `pretrain_dae` stage."""

    steps: PositiveInt = 600
    batch_size: PositiveInt = 64
    optim: OptimParams = OptimParams()
    noise_std: Annotated[float, Field(gt=0.0)] = 0.3  # σ of the Gaussian input corruption
    seed: int = 0
    log_every: PositiveInt = 10
    sample_every: PositiveInt = 200  # resume-state cadence


METHOD_SECTIONS = ("began", "rfgan", "gaan")  # per-method params in `gan` and in a run


class GANParams(Strict):
    """Defaults shared by every run; a run overrides any of them."""

    steps: PositiveInt = 1200
    batch_size: PositiveInt = 64
    optim: OptimParams = OptimParams()
    method: base.MethodName = "gan"
    loss: LossName = "ns"
    n_critic: PositiveInt = 1
    clip_value: Annotated[float, Field(gt=0.0)] = 0.01
    gp_weight: Annotated[float, Field(ge=0.0)] = 10.0  # λ of wgan-gp / dragan penalties
    critic_norm: base.CriticNorm = "auto"  # `ugan.nets.family.critic_norm`
    d_update: base.DUpdate = "joint"  # `ugan.methods.gan.GANMethod.D_STEPS`
    seed: int = 0
    checkpoint_every: PositiveInt = 150
    log_every: PositiveInt = 5
    num_sample_images: PositiveInt = 64
    nonfinite_retries: Annotated[int, Field(ge=0)] = 0  # roll back to the last state and retry
    ema: Annotated[float, Field(strict=True)] | None = None  # G's weight average (training.ema)
    # z ~ N(0, I) or U[-1, 1]; None: the method's own for a random generator (gan, rfgan:
    # normal; began, gaan: uniform) and the decoder's own for a transferred one (init vae)
    prior: LatentPrior | None = None
    lr_decay: LRDecay | None = None  # None: a constant learning rate
    began: BEGANParams = BEGANParams()
    rfgan: RFGANParams = RFGANParams()
    gaan: GAANParams = GAANParams()

    @field_validator("ema")
    @classmethod
    def _ema_decay(cls, value: float | None) -> float | None:
        return check_ema(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> GANParams:
        if self.checkpoint_every > self.steps:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be ≤ steps ({self.steps}) "
                "so that at least one checkpoint is evaluated"
            )
        check_began_keys(self.method, self)
        return self


class RunParams(Strict):
    """One entry of `runs:`: the init and any `gan` field to override for this run."""

    init: Literal["random", "vae"]
    method: base.MethodName | None = None
    loss: LossName | None = None
    steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    n_critic: PositiveInt | None = None
    clip_value: Annotated[float, Field(gt=0.0)] | None = None
    gp_weight: Annotated[float, Field(ge=0.0)] | None = None
    critic_norm: base.CriticNorm | None = None
    d_update: base.DUpdate | None = None
    seed: int | None = None
    checkpoint_every: PositiveInt | None = None
    optim: OptimParams | None = None
    prior: LatentPrior | None = None
    lr_decay: LRDecay | None = None
    # Per-method params: only the keys a run sets replace the `gan` defaults.
    began: BEGANParams | None = None
    rfgan: RFGANParams | None = None
    gaan: GAANParams | None = None

    def resolve(self, defaults: GANParams) -> ResolvedRun:
        exclude = {"init", *METHOD_SECTIONS}
        overrides = {k: v for k, v in self.model_dump(exclude=exclude).items() if v is not None}
        merged = defaults.model_dump() | overrides
        for name in METHOD_SECTIONS:
            section = getattr(self, name)
            if section is not None:
                merged[name] = merged[name] | section.model_dump(exclude_unset=True)
        return ResolvedRun(init=self.init, gan=GANParams.model_validate(merged))


class ResolvedRun(Strict):
    init: Literal["random", "vae"]
    gan: GANParams

    def check(self, key: str, conditional: bool) -> None:
        """The cross-checks of run `key` (`ugan.config.checks`)."""
        gan = self.gan
        check_method(key, gan.method, self.init, gan.loss, gan.n_critic, conditional=conditional)
        checks.check_d_update(key, gan)


INCEPTION_WEIGHTS_HELP = (
    "eval.feature_extractor: inception needs torch-fidelity's InceptionV3 weights on this "
    "machine (they are never downloaded at run time): fetch pt_inception-2015-12-05-6726825d.pth "
    "from https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth (the same file torch-fidelity names "
    "weights-inception-2015-12-05-6726825d.pth under https://github.com/toshas/torch-fidelity/"
    "releases/download/v0.2.0/), copy it here and set eval.weights_path to its path"
)


class EvalParams(Strict):
    num_samples: PositiveInt = 1000
    kid_subset_size: PositiveInt = 500
    batch_size: PositiveInt = 250
    seed: int = 0
    # classifier: the project's own (models/classifier.pt, labelled data); inception:
    # torch-fidelity's InceptionV3 from the local weights file `weights_path` (never downloaded).
    feature_extractor: Literal["classifier", "inception"] = "classifier"
    weights_path: str | None = None
    # k of the k-NN balls of precision / recall / density / coverage (Naeem et al. 2020: 5).
    nearest_k: PositiveInt = 5

    @model_validator(mode="after")
    def _cross_checks(self) -> EvalParams:
        if self.feature_extractor == "inception" and not self.weights_path:
            raise ValueError(f"eval.weights_path is not set. {INCEPTION_WEIGHTS_HELP}")
        if self.nearest_k >= self.num_samples:
            raise ValueError(
                f"eval.nearest_k must be an integer from 1 to {self.num_samples - 1} (below "
                f"eval.num_samples, {self.num_samples}), got {self.nearest_k}"
            )
        return self


class ReportParams(Strict):
    early_checkpoints: PositiveInt = 3
    smoothing: PositiveInt = 25


class TrackingParams(Strict):
    experiment: str = "ugan"
    log_models: bool = True


class PerfParams(Strict):
    """Speed knobs of the training loop (ugan.training.accel); the defaults are exact fp32."""

    precision: Literal["fp32", "tf32", "bf16"] = "fp32"  # exact; TF32 matmuls; bf16 autocast
    channels_last: bool = False  # NHWC memory format for conv nets and image batches
    fused_optim: bool = True  # fused Adam kernels where the device supports them
    compile: bool = False  # torch.compile each net in place (slow first steps)
    deterministic: bool = False  # deterministic kernels (others raise), cudnn.benchmark off
    loss_sync: Literal["auto", "step", "log"] = "auto"  # when losses reach the host: auto =
    # every step on CPU, at the log/checkpoint cadence on CUDA (the non-finite guard then
    # fires there, before any checkpoint)


# The mode-coverage benchmarks (src/ugan/modebench/benchmarks.py BENCHMARKS); a test checks.
BenchmarkName = Literal["ring8", "grid25", "stacked-mnist"]


def _default_variants() -> dict[str, RunParams]:
    toy_gaan = GAANParams(lambda_r=0.1, lambda_p=0.1, lambda_w=1.0)  # GAAN §4.1's 2-D λ's
    gans = {"gan": RunParams(init="random"), "gan-unbalanced": RunParams(init="vae")}
    return {**gans, "gaan": RunParams(init="random", method="gaan", gaan=toy_gaan)}


class ModeBenchmarkParams(Strict):
    """One mode-coverage benchmark (stage `modes`): every variant × seed trains on the
    benchmark's data with the benchmark's nets and is scored on `num_samples` samples."""

    benchmark: BenchmarkName
    seeds: Annotated[list[int], Field(min_length=1)] = [0, 1, 2]
    steps: PositiveInt = 1500
    batch_size: PositiveInt = 100
    checkpoint_every: PositiveInt | None = None  # None: only the last step
    optim: OptimParams = OptimParams(lr=1e-3)
    prior: LatentPrior | None = None  # every variant's `prior` unless it sets its own
    lr_decay: LRDecay | None = None  # every variant's `lr_decay` unless it sets its own
    num_samples: PositiveInt = 2000  # generated samples scored (GAAN §4.1: 2,000)
    pretrain_steps: PositiveInt = 1000  # the VAE (unbalanced variants) and the DAE (rfgan)
    base_channels: PositiveInt = 32  # stacked-mnist conv nets (n, 2n…)
    nets: Literal[checks.STACKED_NETS] = "dcgan"  # stacked-mnist: ours, or Unrolled GAN's K/4, K/2
    mlp: base.MLPNets = base.MLPNets()  # ring8 / grid25's nets
    unrolled: base.UnrolledNets = base.UnrolledNets()  # stacked-mnist's unrolled-k4 / k2 nets
    train_images: PositiveInt = 25_600  # stacked-mnist: training images (GAAN §4.2: 25,600)
    dae_noise_std: Annotated[float, Field(gt=0.0)] = 0.1  # RFGAN's DAE input noise, net coordinates
    variants: dict[str, RunParams] = Field(default_factory=_default_variants)
    # Cells trained at once, each in its own process with one torch thread (2-D cells are
    # bound by per-step Python overhead); `auto`: usable cores ÷ UGAN_JOBS (1 on a CUDA
    # device), at most the cells left to train; 1: one after another in the stage's process.
    # Not part of a cell's fingerprint: the scores do not depend on it.
    workers: int | Literal["auto"] = "auto"

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and value > 0):
            return value
        raise ValueError("must be a positive number of processes or 'auto'")

    @model_validator(mode="after")
    def _check_variants(self) -> ModeBenchmarkParams:
        if not self.variants:
            raise ValueError("at least one variant is required")
        for key, variant in self.variants.items():
            if not RUN_KEY.match(key):
                raise ValueError(f"variant keys must match {RUN_KEY.pattern}, got {key!r}")
            variant.resolve(self.gan_defaults(variant)).check(key, conditional=False)
            if self.benchmark != "stacked-mnist" and variant.method == "began":
                raise ValueError(
                    f"variants.{key}: BEGAN's autoencoder discriminator is convolutional; "
                    "it runs on stacked-mnist, not on 2-D points"
                )
        if self.benchmark == "stacked-mnist" and "mlp" in self.model_fields_set:
            raise ValueError("mlp: sets the 2-D benchmarks' nets; stacked-mnist's are conv nets")
        checks.check_stacked_nets(self)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self

    def gan_defaults(self, variant: RunParams | None = None) -> GANParams:
        """The benchmark's settings for `variant`'s run; a variant with its own `steps` is
        checkpointed (and scored) at its own last step unless `checkpoint_every` says otherwise."""
        steps = variant.steps if variant is not None and variant.steps else self.steps
        return GANParams(
            steps=steps,
            batch_size=self.batch_size,
            optim=self.optim,
            prior=self.prior,
            lr_decay=self.lr_decay,
            checkpoint_every=self.checkpoint_every or steps,
            log_every=min(10, steps),
        )

    def cell(self, variant: str, seed: int) -> ResolvedRun:
        """The resolved run of one (variant, seed)."""
        run = self.variants[variant].resolve(self.gan_defaults(self.variants[variant]))
        return ResolvedRun(init=run.init, gan=run.gan.model_copy(update={"seed": seed}))


class Params(Strict):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    classifier: ClassifierParams = ClassifierParams()
    vae: VAEParams = VAEParams()
    dae: DAEParams = DAEParams()
    gan: GANParams = GANParams()
    runs: dict[str, RunParams] = Field(
        default_factory=lambda: {
            "dcgan": RunParams(init="random"),
            "dcgan-unbalanced": RunParams(init="vae"),
        }
    )
    eval: EvalParams = EvalParams()
    report: ReportParams = ReportParams()
    tracking: TrackingParams = TrackingParams()
    perf: PerfParams = PerfParams()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Mode-coverage benchmarks by name (stage `modes`); none by default: `ugan grid modes`.
    modes: dict[str, ModeBenchmarkParams] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_runs(self) -> Params:
        if not self.runs:
            raise ValueError("at least one run is required")
        bad = [key for key in self.runs if not RUN_KEY.match(key)]
        if bad:
            raise ValueError(
                f"run keys must match {RUN_KEY.pattern} (lowercase letters, digits, - and _), "
                f"got {bad}"
            )
        for key, run in self.runs.items():
            resolved = run.resolve(self.gan)
            if resolved.gan.checkpoint_every > resolved.gan.steps:
                raise ValueError(f"runs.{key}: checkpoint_every must be ≤ steps")
            resolved.check(key, self.model.conditional)
        check_labels(self.data, self.model.conditional, self.modes)
        return self

    def run(self, key: str) -> ResolvedRun:
        if key not in self.runs:
            raise ConfigError(f"unknown run {key!r}; runs in params are {sorted(self.runs)}")
        return self.runs[key].resolve(self.gan)
