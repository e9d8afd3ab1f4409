"""Cross-checks between params that no single field's type can express.

The models of `ugan.config.schema` call these from their validators, so a failed check reaches
the user as one line of the `ConfigError` that `ugan.config.load` raises, naming the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ugan.methods.catalog import CATALOG, check_combination
from ugan.nets.arch import UNROLLED_NETS


def check_method(
    key: str, method: str, init: str, loss: str, n_critic: int, *, conditional: bool
) -> None:
    """Run `key`'s (method, init, loss, n_critic, conditional) must exist
    (`ugan.methods.catalog`); the message names the run."""
    try:
        check_combination(method, init, loss, n_critic, conditional=conditional)
    except ValueError as exc:
        raise ValueError(f"runs.{key}: {exc}") from None


# Losses whose D step cannot be split into a real and a fake update → why: the losses of
# `ugan.losses` without `d_terms` (tests/test_losses.py checks they agree)
UNSPLIT_LOSSES = {
    "wgan-gp": "its gradient penalty is taken between a real and a fake sample",
    "dragan": "its gradient penalty is one term of the step on both batches",
}


def check_d_update(key: str, gan: Any) -> None:
    """`d_update: split` (two D updates a step, Keras-GAN's) needs the D step of
    `ugan.methods.gan` and a loss whose two batches are separate terms."""
    if gan.d_update != "split":
        return
    if not CATALOG[gan.method].splits_d_update:
        able = sorted(name for name, rules in CATALOG.items() if rules.splits_d_update)
        raise ValueError(
            f"runs.{key}: d_update 'split' applies to methods {able}; method {gan.method!r} "
            "makes its own discriminator step (set d_update: joint)"
        )
    if gan.loss in UNSPLIT_LOSSES:
        raise ValueError(
            f"runs.{key}: d_update 'split' cannot train loss {gan.loss!r}: "
            f"{UNSPLIT_LOSSES[gan.loss]} (set d_update: joint)"
        )


# The `gan` keys BEGAN's own training replaces: key → (its default, why BEGAN refuses another)
BEGAN_OWN_KEYS = {
    "critic_norm": ("auto", "its D is an autoencoder with no normalisation"),
    "lr_decay": (
        None,
        "it halves its learning rate itself when M_global stalls (began.lr_halve_patience)",
    ),
}


def check_began_keys(method: str, gan: Any) -> None:
    """Method 'began' refuses a `BEGAN_OWN_KEYS` key of `gan` (the `gan` section, or a run's
    resolved one) set away from its default, naming the key and the value to set."""
    if method != "began":
        return
    for key, (default, why) in BEGAN_OWN_KEYS.items():
        if getattr(gan, key) != default:
            spelled = "null" if default is None else default
            raise ValueError(f"{key} does not apply to method 'began': {why}; set {key}: {spelled}")


def check_ema(decay: float | None) -> float | None:
    """`gan.ema`: the decay of the generator's weight average (`ugan.training.ema`) is in
    [0, 1) (0: the average is G itself), or null for none."""
    if decay is not None and not 0.0 <= decay < 1.0:
        raise ValueError("the EMA decay must be in [0, 1) (e.g. 0.999), or null for no EMA")
    return decay


def check_labels(data: Any, conditional: bool, modes: Mapping[str, Any]) -> None:
    """What needs class labels refuses data without them (an image folder without class
    subfolders, as LSUN or CelebA exports are): a class-conditional model and the Stacked MNIST
    benchmark (labelled digits). `data` is the `data:` section, `modes` the `modes:` one.
    Everything else runs unlabelled: IS / FID / KID then use a feature network trained to
    predict rotations (`ugan.training.classifier`)."""
    if data.source != "image-folder" or data.labels_from_subfolders:
        return
    unlabelled = (
        "data.source image-folder is unlabelled unless data.labels_from_subfolders: true "
        "(class = top-level subfolder)"
    )
    if conditional:
        raise ValueError(f"model.conditional: true needs class labels; {unlabelled}")
    for name, entry in modes.items():
        if entry.benchmark == "stacked-mnist":
            raise ValueError(
                f"modes.{name}: stacked-mnist stacks labelled MNIST digits (mnist5k or "
                f"mnist-idx); {unlabelled}"
            )


STACKED_NETS = ("dcgan", *UNROLLED_NETS)  # a mode benchmark's `nets`


def check_stacked_nets(entry: Any) -> None:
    """A mode benchmark's `nets` (`ugan.config.schema.ModeBenchmarkParams`): Unrolled GAN's
    low-capacity nets (`ugan.nets.unrolled`) are Stacked MNIST nets, and BEGAN keeps its own
    autoencoder discriminator, so neither the 2-D benchmarks nor a BEGAN variant take them."""
    if entry.nets == "dcgan":
        return
    if entry.benchmark != "stacked-mnist":
        raise ValueError(
            f"nets: {entry.nets!r} are Stacked MNIST nets; {entry.benchmark}'s nets are set by "
            "`mlp`, leave `nets` at 'dcgan'"
        )
    for key, variant in entry.variants.items():
        if variant.method == "began":
            raise ValueError(
                f"variants.{key}: BEGAN's discriminator is its own conv autoencoder, not "
                f"{entry.nets!r}; run it on a benchmark with nets 'dcgan'"
            )
