"""The step interface every method implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch


class Method(Protocol):
    """What the training loop needs from a method. `build` makes one from the run's params and
    the generator init file's payload; `train_step` returns at least `d_loss` and `g_loss`."""

    generator: torch.nn.Module
    prior: str  # "normal" | "uniform": the latent distribution the generator expects
    # net attribute → why a step differentiates its graph twice (a gradient penalty): such a
    # net is not compiled, and is synchronised by a twice-differentiable BatchNorm
    twice_differentiated: Mapping[str, str]

    @classmethod
    def build(cls, arch, run, generator_init: dict, init_std: float, **resources) -> Method: ...

    def to(self, device) -> Method: ...

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        """One generator update (and its discriminator updates); returns the step's losses."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def run_prior(run, generator_init: dict, default: str) -> str:
    """The latent prior a run's generator is trained with: `gan.prior` when set; otherwise a
    transferred decoder's own (the init file's) and, for a random generator, `default` (the
    method's: the prior of its paper)."""
    if run.gan.prior is not None:
        return run.gan.prior
    if "state_dict" in generator_init:
        return generator_init.get("prior", "normal")
    return default


def draw_latent(batch: int, latent_dim: int, prior: str, device) -> torch.Tensor:
    """z for one training step, drawn on `device`: N(0, I) or U[-1, 1]."""
    if prior == "uniform":
        return torch.rand(batch, latent_dim, device=device) * 2 - 1
    return torch.randn(batch, latent_dim, device=device)
