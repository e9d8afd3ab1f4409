"""What every params model shares: unknown keys are errors, values are frozen; and the settings
every trainer shares (Adam, the learning-rate decay, the latent prior)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLPNets(Strict):
    """The fully connected nets of the 2-D benchmarks (`ugan.nets.mlp.MLPConfig`); the defaults
    are GAAN Table 1's. Unrolled GAN's ring (Metz et al. 2016, App. A; RFGAN §4.1 takes its
    data from there) used a 256-d latent, 2 hidden layers in G and 1 in D, orthogonal weights
    and D's input scaled by 1/4."""

    latent_dim: PositiveInt = 2
    hidden_dim: PositiveInt = 128
    hidden_layers: PositiveInt = 3  # D, GAAN's encoder and the VAE / DAE encoders
    generator_layers: PositiveInt = 3  # G (and so the VAE's decoder)
    # G's output: tanh, the mixture mapped into its range (its extent at ±0.5), as GAAN's code
    # maps it into its sigmoid's; identity, the mixture's own coordinates (Unrolled GAN's)
    output: Literal["tanh", "identity"] = "tanh"
    # weights: He-normal (GAAN's code) or orthogonal with gain 0.8 (Unrolled GAN App. A)
    init: Literal["he", "orthogonal"] = "he"
    # D and the encoders multiply their input by this first (Unrolled GAN's D: 1/4, "to roughly
    # scale to (-1, 1)" the ring of radius 2); 1: as it is
    input_scale: Annotated[float, Field(gt=0.0)] = 1.0


class UnrolledNets(Strict):
    """Unrolled GAN's Stacked MNIST nets (`nets: unrolled-k4 | unrolled-k2`)."""

    # weights: N(0, model.init_std) as the DCGAN code Unrolled GAN's derives from, or Xavier-uniform
    # as the GAAN authors' own Stacked MNIST code (tntrung/msgan `modules/ops.py`)
    init: Literal["normal", "xavier"] = "normal"


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
# D's normalisation; auto: layer norm under a gradient penalty, batch norm otherwise
CriticNorm = Literal["auto", "batch", "layer", "none"]

# The methods a run can use (src/ugan/methods/); a test checks it matches the registry.
MethodName = Literal["gan", "began", "rfgan", "gaan"]

# The dataset sources (src/ugan/data/sources.py SOURCES); a test checks they match.
SourceName = Literal["mnist5k", "mnist-idx", "cifar10", "image-folder"]

# How D steps: on the real and the fake batch in one update, or in two (`ugan.methods.gan`)
DUpdate = Literal["joint", "split"]
