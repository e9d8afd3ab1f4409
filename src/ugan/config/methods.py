"""The per-method params sections (`gan.began`, `gan.rfgan`, `gan.gaan`, and the same in a run):
one model per method of src/ugan/methods/."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ugan.config.base import PositiveInt, Strict


class BEGANParams(Strict):
    """BEGAN (src/ugan/methods/began.py): equilibrium control and learning-rate schedule."""

    gamma: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # diversity ratio γ
    lambda_k: Annotated[float, Field(ge=0.0)] = 0.001  # proportional gain of k_t
    k_init: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # k_0
    # Learning rate halved when the moving average of M_global (decay `m_global_decay`) has
    # not reached a new minimum for `lr_halve_patience` steps (≥ 1 / λ_k: k_t's time constant),
    # never below `lr_min`.
    m_global_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.99
    lr_halve_patience: PositiveInt = 2000
    lr_min: Annotated[float, Field(gt=0.0)] = 1e-6
    filters: PositiveInt | None = None  # n of the nets (n, 2n, 3n…); None: model.base_channels


class RFGANParams(Strict):
    """RFGAN (src/ugan/methods/rfgan.py); its frozen encoder comes from models/dae.pt."""

    g_updates: PositiveInt = 2  # generator updates per step (the reference code: 2)


class GAANParams(Strict):
    """GAAN (src/ugan/methods/gaan.py), eqs. 3-7: §4.2's image λ's (2-D mixtures: §4.1's)."""

    lambda_r: Annotated[float, Field(ge=0.0)] = 1.0  # weight of the regulariser W (eq. 3)
    lambda_p: Annotated[float, Field(ge=0.0)] = 1.0  # gradient penalty (eq. 4)
    lambda_w: Annotated[float, Field(gt=0.0)] | None = None  # None: √(d / D) (eq. 5)
    # "paper": Algorithm 1 as written; "authors-code": as its authors' image code trains
    # (tntrung/gan `gaan_image`), "authors-mnist-code" their MNIST code (`gaan_mnist`)
    # (`ugan.methods.gaan.OBJECTIVES`)
    objective: Literal["paper", "authors-code", "authors-mnist-code"] = "paper"
    # "one": Algorithm 1's one minibatch x^m, z^m for all three updates; "per-update": each
    # update draws its own x and z, as both of its authors' codes do (gaan_mnist, gaan_image)
    batches: Literal["one", "per-update"] = "one"
    # Where R and W's f are measured: "auto", the net family's (D's features Φ for images as
    # §4.2, the data for 2-D points as §4.1); "features" or "data" to choose (an ablation)
    space: Literal["auto", "features", "data"] = "auto"
