"""What each method accepts, as one table by name (no nets: config reads it before any work).

Per method: the generator inits it can start from, the losses of `ugan.losses` it supports (or
its own objective, when it ignores the run's `loss`), whether `n_critic` applies, and whether it
can be class-conditional. `combinations()` is this table as the report shows it;
`check_combination` is what validation calls. The method classes live in `ugan.methods.table`;
a test checks both tables name the same methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ugan.core.markdown import md_table

# The GAN losses of `ugan.losses` by name (its LOSSES: tests/test_losses.py checks they agree),
# here so that params are checked without importing torch.
LossName = Literal["ns", "lsgan", "wgan", "wgan-gp", "dragan", "hinge"]
INITS = ("random", "vae")
ALL_LOSSES = get_args(LossName)


@dataclass(frozen=True)
class MethodRules:
    inits: tuple[str, ...] = INITS
    losses: tuple[str, ...] | None = ALL_LOSSES  # None: the method has its own objective
    uses_n_critic: bool = True  # False: one D update per step, so n_critic must be 1
    conditional: bool = True  # False: the nets take no class labels
    # False: the method makes its own D step, so `d_update` must stay "joint"
    splits_d_update: bool = True

    @property
    def own_objective(self) -> bool:
        return self.losses is None


CATALOG: dict[str, MethodRules] = {
    "gan": MethodRules(),
    # BEGAN's decoder has no VAE-decoder twin; one simultaneous D / G update; its own L1 objective
    "began": MethodRules(
        inits=("random",),
        losses=None,
        uses_n_critic=False,
        conditional=False,
        splits_d_update=False,
    ),
    "rfgan": MethodRules(),
    # GAAN Algorithm 1: one AE, one D and one G update per step; eq. 4 is cross-entropy
    "gaan": MethodRules(losses=("ns",), uses_n_critic=False, splits_d_update=False),
}


def combinations() -> dict[str, dict]:
    """{method: {"inits": [...], "losses": [...] or "own objective", "n_critic": bool}}: which
    (method, init) and (method, loss) combinations exist — for validation and the report."""
    return {
        name: {
            "inits": list(rules.inits),
            "losses": "own objective" if rules.own_objective else list(rules.losses),
            "n_critic": rules.uses_n_critic,
        }
        for name, rules in sorted(CATALOG.items())
    }


def combinations_markdown() -> str:
    """`combinations()` as a Markdown table, for the report."""
    rows = []
    for name, row in combinations().items():
        losses = row["losses"] if isinstance(row["losses"], str) else ", ".join(row["losses"])
        rows.append([name, ", ".join(row["inits"]), losses])
    return md_table(["method", "inits", "losses"], rows, "lll")


def check_combination(
    method: str, init: str, loss: str, n_critic: int, *, conditional: bool = False
) -> None:
    """Raise ValueError naming what the method does not accept and the valid combinations."""
    if method not in CATALOG:
        raise ValueError(f"unknown method {method!r}; valid methods are {sorted(CATALOG)}")
    rules = CATALOG[method]
    if init not in rules.inits:
        valid = "; ".join(f"{m}: {', '.join(r.inits)}" for m, r in sorted(CATALOG.items()))
        raise ValueError(
            f"method {method!r} cannot start from init {init!r} (its generator has no twin "
            f"of that kind). Valid (method, init) combinations — {valid}"
        )
    if not rules.own_objective and loss not in rules.losses:
        raise ValueError(f"method {method!r} supports losses {list(rules.losses)}, got {loss!r}")
    if not rules.uses_n_critic and n_critic != 1:
        raise ValueError(
            f"method {method!r} makes one discriminator update per step: n_critic must be 1, "
            f"got {n_critic}"
        )
    if conditional and not rules.conditional:
        raise ValueError(f"method {method!r} is unconditional; set model.conditional: false")
