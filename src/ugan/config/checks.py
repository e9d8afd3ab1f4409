"""Cross-checks between params that no single field's type can express.

The models of `ugan.config.schema` call these from their validators, so a failed check reaches
the user as one line of the `ConfigError` that `ugan.config.load` raises, naming the run.
"""

from __future__ import annotations

from ugan.methods.catalog import check_combination


def check_method(
    key: str, method: str, init: str, loss: str, n_critic: int, *, conditional: bool
) -> None:
    """Run `key`'s (method, init, loss, n_critic) must exist (`ugan.methods.catalog`), and a
    class-conditional model rules out BEGAN (its autoencoder discriminator takes no labels)."""
    try:
        check_combination(method, init, loss, n_critic)
    except ValueError as exc:
        raise ValueError(f"runs.{key}: {exc}") from None
    if conditional and method == "began":
        raise ValueError(
            f"runs.{key}: method 'began' is unconditional; set model.conditional: false"
        )
