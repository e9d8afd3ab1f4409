"""Training methods, chosen from a registry by name; each exposes the same step interface.

Each method class may declare what it accepts (read by `combinations` and `check_combination`,
which config calls before any work):
- `inits`: the generator inits it can start from (default: random and vae);
- `losses`: the losses of `ugan.losses` it supports (default: all); `own_objective = True` when
  it has its own objective and ignores the run's `loss`;
- `uses_n_critic = False` when its step is fixed (then `n_critic` must be 1).
"""

from typing import get_args

from ugan.core.markdown import md_table
from ugan.losses import LossName
from ugan.methods.base import METHODS, Method, get_method
from ugan.methods.began import BEGANMethod
from ugan.methods.gaan import GAANMethod
from ugan.methods.gan import GANMethod
from ugan.methods.rfgan import RFGANMethod

INITS = ("random", "vae")

__all__ = [
    "INITS",
    "METHODS",
    "BEGANMethod",
    "GAANMethod",
    "GANMethod",
    "Method",
    "RFGANMethod",
    "check_combination",
    "combinations",
    "combinations_markdown",
    "get_method",
]


def combinations() -> dict[str, dict]:
    """{method: {"inits": [...], "losses": [...] or "own objective", "n_critic": bool}}: which
    (method, init) and (method, loss) combinations exist — for validation and the report."""
    table = {}
    for name, cls in sorted(METHODS.items()):
        own = getattr(cls, "own_objective", False)
        table[name] = {
            "inits": list(getattr(cls, "inits", INITS)),
            "losses": "own objective" if own else list(getattr(cls, "losses", get_args(LossName))),
            "n_critic": getattr(cls, "uses_n_critic", True),
        }
    return table


def combinations_markdown() -> str:
    """`combinations()` as a Markdown table, for the report."""
    rows = []
    for name, row in combinations().items():
        losses = row["losses"] if isinstance(row["losses"], str) else ", ".join(row["losses"])
        rows.append([name, ", ".join(row["inits"]), losses])
    return md_table(["method", "inits", "losses"], rows, "lll")


def check_combination(method: str, init: str, loss: str, n_critic: int) -> None:
    """Raise ValueError naming what the method does not accept and the valid combinations."""
    table = combinations()
    if method not in table:
        raise ValueError(f"unknown method {method!r}; valid methods are {sorted(table)}")
    row = table[method]
    if init not in row["inits"]:
        valid = "; ".join(f"{m}: {', '.join(r['inits'])}" for m, r in table.items())
        raise ValueError(
            f"method {method!r} cannot start from init {init!r} (its generator has no twin "
            f"of that kind). Valid (method, init) combinations — {valid}"
        )
    if row["losses"] != "own objective" and loss not in row["losses"]:
        raise ValueError(f"method {method!r} supports losses {row['losses']}, got {loss!r}")
    if not row["n_critic"] and n_critic != 1:
        raise ValueError(
            f"method {method!r} makes one discriminator update per step: n_critic must be 1, "
            f"got {n_critic}"
        )
