"""An exponential moving average (EMA) of the generator's weights, kept beside G for every
method (`gan.ema`: its decay; null: none).

After each training step (after the step's generator update, or updates: RFGAN's `g_updates`,
GAAN's autoencoder and generator updates all count as one step), with t the number of updates so
far (1, 2, …):

    d_t = min(decay, (1 + t) / (10 + t))          (TF's ExponentialMovingAverage warm-up)
    θ_EMA ← d_t θ_EMA + (1 − d_t) θ_G             for every parameter
    β_EMA ← β_G                                   for every buffer (BatchNorm running stats)

The warm-up keeps a short run's average from being dominated by the initial weights (0.999¹²⁰⁰ ≈
0.3 without it); from t ≈ 9 / (1 − decay) on, d_t = decay. Buffers are copied, not averaged, as
in StyleGAN2-ADA's and timm's ModelEmaV2: the repo samples with batch statistics anyway
(`ugan.nets.generator_file.sample`), so they matter only for a generator run in eval mode.

The average lives in a plain copy of G made before any speed policy or data-parallel wrapping
(no compile, no SyncBatchNorm), so it is saved in the generator file format as it is. Its state
(weights, buffers, t) is part of the resume state: one update is one `lerp_` per tensor on the
same values, so a resumed run reproduces the uninterrupted run's average bit for bit.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA:
    def __init__(self, generator: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.generator = copy.deepcopy(generator).requires_grad_(False)

    def current_decay(self) -> float:
        """d_t of the next update."""
        t = self.updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        """One step of the average towards `live` (the trained G, wrapped or compiled or not:
        tensors are matched by name)."""
        weight = 1.0 - self.current_decay()
        params = dict(live.named_parameters())
        buffers = dict(live.named_buffers())
        for name, mine in self.generator.named_parameters():
            mine.lerp_(params[name].detach().to(mine.dtype), weight)
        for name, mine in self.generator.named_buffers():
            mine.copy_(buffers[name])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.updates = int(state["updates"])
