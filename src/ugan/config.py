"""Typed params: one pydantic model per `params.yaml` section, validated before any work.

Every model forbids unknown keys, so a typo stops the stage with the key's name instead of being
silently ignored. `load_params` turns pydantic's errors into one `ConfigError` whose message
names each offending key (dotted path) and what is allowed there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ugan.losses import LossName
from ugan.nets import ArchConfig

PositiveInt = Annotated[int, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
RUN_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# The methods a run can use (src/ugan/methods/); a test checks it matches the registry.
MethodName = Literal["gan"]


class ConfigError(ValueError):
    """Params failed validation; the message names every offending key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Strict):
    source: Literal["mnist5k"] = "mnist5k"
    image_size: Literal[28, 32, 64] = 28
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int = 0


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


class OptimParams(Strict):
    lr: Annotated[float, Field(gt=0.0)] = 2e-4
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999


class ClassifierParams(Strict):
    steps: PositiveInt = 600
    batch_size: PositiveInt = 64
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    seed: int = 0
    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] = 0.95


class VAEParams(Strict):
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 64
    optim: OptimParams = OptimParams()
    seed: int = 0
    log_every: PositiveInt = 10
    sample_every: PositiveInt = 250


class GANParams(Strict):
    """Defaults shared by every run; a run overrides any of them."""

    steps: PositiveInt = 1200
    batch_size: PositiveInt = 64
    optim: OptimParams = OptimParams()
    method: MethodName = "gan"
    loss: LossName = "ns"
    n_critic: PositiveInt = 1
    clip_value: Annotated[float, Field(gt=0.0)] = 0.01
    gp_weight: Annotated[float, Field(ge=0.0)] = 10.0  # λ of wgan-gp / dragan penalties
    seed: int = 0
    checkpoint_every: PositiveInt = 200
    log_every: PositiveInt = 10
    num_sample_images: PositiveInt = 64
    nonfinite_retries: Annotated[int, Field(ge=0)] = 0  # roll back to the last state and retry

    @model_validator(mode="after")
    def _cadence_fits(self) -> GANParams:
        if self.checkpoint_every > self.steps:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be ≤ steps ({self.steps}) "
                "so that at least one checkpoint is evaluated"
            )
        return self


class RunParams(Strict):
    """One entry of `runs:`: the init and any `gan` field to override for this run."""

    init: Literal["random", "vae"]
    method: MethodName | None = None
    loss: LossName | None = None
    steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    n_critic: PositiveInt | None = None
    clip_value: Annotated[float, Field(gt=0.0)] | None = None
    gp_weight: Annotated[float, Field(ge=0.0)] | None = None
    seed: int | None = None
    checkpoint_every: PositiveInt | None = None
    optim: OptimParams | None = None

    def resolve(self, defaults: GANParams) -> ResolvedRun:
        overrides = {k: v for k, v in self.model_dump(exclude={"init"}).items() if v is not None}
        merged = defaults.model_dump() | overrides
        return ResolvedRun(init=self.init, gan=GANParams.model_validate(merged))


class ResolvedRun(Strict):
    init: Literal["random", "vae"]
    gan: GANParams


class EvalParams(Strict):
    num_samples: PositiveInt = 1000
    kid_subset_size: PositiveInt = 500
    batch_size: PositiveInt = 250
    seed: int = 0


class ReportParams(Strict):
    early_checkpoints: PositiveInt = 3
    smoothing: PositiveInt = 25


class TrackingParams(Strict):
    experiment: str = "ugan"
    log_models: bool = True


class Params(Strict):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    classifier: ClassifierParams = ClassifierParams()
    vae: VAEParams = VAEParams()
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
    device: Literal["auto", "cpu", "cuda"] = "auto"

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
        return self

    def run(self, key: str) -> ResolvedRun:
        if key not in self.runs:
            raise ConfigError(f"unknown run {key!r}; runs in params are {sorted(self.runs)}")
        return self.runs[key].resolve(self.gan)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "<top level>"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{where}: got {error.get('input')!r}, allowed values are {expected}"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation: `X`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys the section at `loc` accepts, so an 'unknown key' error lists the valid ones."""
    model: type[BaseModel] | None = Params
    parts = list(loc[:-1])
    while parts and model is not None:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        model = _section_model(field.annotation)
        if field.annotation is not None and get_origin(field.annotation) is dict and parts:
            parts.pop(0)  # skip the user's own key, e.g. the run name under `runs`
    return sorted(model.model_fields) if model is not None else []


def parse_params(raw: dict[str, Any] | None) -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            line = _describe(error)
            if error["type"] == "extra_forbidden":
                allowed = _allowed_keys(tuple(error["loc"]))
                if allowed:
                    line += f"; allowed keys are {allowed}"
            lines.append(line)
        raise ConfigError("invalid params:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw)
