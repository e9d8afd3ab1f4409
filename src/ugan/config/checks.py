"""Cross-checks between params that no single field's type can express.

The models of `ugan.config.schema` call these from their validators, so a failed check reaches
the user as one line of the `ConfigError` that `ugan.config.load` raises, naming the run.
"""

from __future__ import annotations

from ugan.methods.catalog import check_combination


def check_method(
    key: str, method: str, init: str, loss: str, n_critic: int, *, conditional: bool
) -> None:
    """Run `key`'s (method, init, loss, n_critic, conditional) must exist
    (`ugan.methods.catalog`); the message names the run."""
    try:
        check_combination(method, init, loss, n_critic, conditional=conditional)
    except ValueError as exc:
        raise ValueError(f"runs.{key}: {exc}") from None
