"""What every params model shares: unknown keys are errors, values are frozen; and the settings
every trainer shares (Adam, the learning-rate decay, the latent prior)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimParams(Strict):
    lr: Annotated[float, Field(gt=0.0)] = 2e-4
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    # Adam's L2 weight decay on every net the optimizer trains (GAAN §4.1 tuned its baselines
    # "with weight decay if it gets better results"); 0: none
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0


class LRDecay(Strict):
    """Staircase decay of every optimizer of a GAN run: lr × rate^⌊step / every⌋, the step
    counted in generator steps (GAAN §4.1: "decayed every 10K steps with a base of 0.9")."""

    every: PositiveInt
    rate: Annotated[float, Field(gt=0.0, le=1.0)]


LatentPrior = Literal["normal", "uniform"]
