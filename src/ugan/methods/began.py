"""BEGAN (Berthelot, Schumm & Metz 2017): an autoencoder discriminator and the k_t equilibrium.

With L(v) = mean |v − D(v)| (the L1 autoencoder loss, η = 1), one step is (§3.4):

    L_D = L(x) − k_t · L(G(z))                     for θ_D
    L_G = L(G(z))                                  for θ_G
    k_{t+1} = clip(k_t + λ_k (γ L(x) − L(G(z))), 0, 1)

θ_D and θ_G are updated *simultaneously*: both gradients are taken at the same parameters, each
network's from its own loss only (the paper's footnote 2). One z serves L_D and L_G, as in the
reference implementations (the paper names z_D and z_G but updates them in the same step).
z ~ U[-1, 1] (`prior = "uniform"`).

Convergence measure, returned every step: M_global = L(x) + |γ L(x) − L(G(z))| (§3.4.2).

Learning-rate schedule ("decaying by a factor of 2 when the measure of convergence stalls", §4.1),
made precise here: m̄_t is the exponential moving average of M_global (decay `m_global_decay`,
m̄_1 = M_1). M_global *stalls* when m̄ has not reached a new minimum for `lr_halve_patience`
consecutive steps; then both learning rates are halved (not below `lr_min`) and the count
restarts from the current m̄. k_t, m̄, its minimum and the count are part of `state_dict`, and
the optimizers' states carry the current learning rates, so a resumed run continues exactly.

k_t, M_global, m̄ and the stall count live on the device (float64, the same numbers as on the
host): a step reads nothing back. The schedule reads the stall count only when a halving may be
due (its host bound reaches the patience): at most twice per `lr_halve_patience` steps.
Data-parallel training replaces `_mean_over_ranks` so that every rank controls k_t and the
schedule from the global batch's L(x) and L(G(z)), as one process would.

The run's `loss` is not used: BEGAN has its own objective. The generator is BEGAN's own
decoder-shaped net, drawn from the run's seed; a dcgan random-init recipe is ignored, and
transferred dcgan weights (`init: vae`) are refused (config rejects that combination first).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial

import torch

from ugan.core.device import seed_everything
from ugan.methods.base import draw_latent, run_prior
from ugan.nets.arch import ArchConfig
from ugan.nets.began import BEGANDiscriminator, BEGANGenerator


def autoencoder_loss(discriminator: torch.nn.Module, v: torch.Tensor) -> torch.Tensor:
    """L(v) = mean over batch and pixels of |v − D(v)|."""
    return (v - discriminator(v)).abs().mean()


class BEGANMethod:
    prior = "uniform"

    @classmethod
    def build(
        cls, arch: ArchConfig, run, generator_init: dict, init_std: float, **resources
    ) -> BEGANMethod:
        if "state_dict" in generator_init:
            raise ValueError(
                "method 'began' builds its own generator and cannot start from transferred "
                "weights (init: vae); use init: random"
            )
        params = run.gan.began
        cfg = dataclasses.replace(arch, base_channels=params.filters or arch.base_channels)
        seed_everything(run.gan.seed)  # D first, then G, both from the run's seed
        discriminator = BEGANDiscriminator(cfg)
        generator = BEGANGenerator(cfg)
        optim = run.gan.optim
        return cls(
            generator,
            discriminator,
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            weight_decay=optim.weight_decay,
            gamma=params.gamma,
            lambda_k=params.lambda_k,
            k_init=params.k_init,
            m_global_decay=params.m_global_decay,
            lr_halve_patience=params.lr_halve_patience,
            lr_min=params.lr_min,
            prior=run_prior(run, generator_init, cls.prior),
        )

    def __init__(
        self,
        generator: BEGANGenerator,
        discriminator: BEGANDiscriminator,
        *,
        lr: float,
        betas: tuple[float, float],
        weight_decay: float = 0.0,
        gamma: float = 0.5,
        lambda_k: float = 0.001,
        k_init: float = 0.0,
        m_global_decay: float = 0.99,
        lr_halve_patience: int = 500,
        lr_min: float = 1e-6,
        prior: str = "uniform",
    ):
        self.generator = generator
        self.prior = prior
        self.discriminator = discriminator
        self.latent_dim = generator.cfg.latent_dim
        self.gamma = gamma
        self.lambda_k = lambda_k
        self.m_global_decay = m_global_decay
        self.lr_halve_patience = lr_halve_patience
        self.lr_min = lr_min
        # The control state, on the device (`to`); float64 as the host floats it replaces.
        self._k = torch.tensor(float(k_init), dtype=torch.float64)
        self._m_ema = torch.tensor(math.nan, dtype=torch.float64)  # m̄_t; nan until step 1
        self._m_best = torch.tensor(math.inf, dtype=torch.float64)  # lowest m̄ since a halving
        self._since_best = torch.tensor(0)  # steps since m̄ last reached a new minimum
        self._since_bound = 0  # host: an upper bound of _since_best (exact after a read)
        adam = partial(torch.optim.Adam, lr=lr, betas=betas, weight_decay=weight_decay)
        self.opt_g = adam(generator.parameters())
        self.opt_d = adam(discriminator.parameters())

    def to(self, device) -> BEGANMethod:
        self.generator.to(device)
        self.discriminator.to(device)
        for name in ("_k", "_m_ema", "_m_best", "_since_best"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    @property
    def twice_differentiated(self) -> dict[str, str]:
        return {}  # no gradient penalty

    # The control state as host numbers (each read waits for the device: tests, state_dict).
    @property
    def k(self) -> float:
        return self._k.item()

    @property
    def m_ema(self) -> float:
        return self._m_ema.item()

    @property
    def m_best(self) -> float:
        return self._m_best.item()

    @property
    def since_best(self) -> int:
        return int(self._since_best.item())

    @staticmethod
    def _mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
        """The identity in one process; data-parallel training averages over the ranks."""
        return values

    @property
    def lr(self) -> float:
        return self.opt_d.param_groups[0]["lr"]

    def _noise(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return draw_latent(batch, self.latent_dim, self.prior, like.device)

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor | float]:
        real, _ = next_batch()
        fake = self.generator(self._noise(real.shape[0], real))
        l_real = autoencoder_loss(self.discriminator, real)
        l_fake = autoencoder_loss(self.discriminator, fake)
        # D minimises L(x) − k_t L(G(z)); G minimises L(G(z)). Both gradients at the same θ.
        d_loss = l_real - self._k.to(l_fake.dtype) * l_fake
        g_loss = l_fake
        d_params = list(self.discriminator.parameters())
        g_params = list(self.generator.parameters())
        d_grads = torch.autograd.grad(d_loss, d_params, retain_graph=True)
        g_grads = torch.autograd.grad(g_loss, g_params)
        for params, grads in ((d_params, d_grads), (g_params, g_grads)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        self.opt_d.step()
        self.opt_g.step()

        # Proportional control of k_t toward E[L(G(z))] = γ E[L(x)], k_t ∈ [0, 1].
        observed = torch.stack([l_real.detach(), l_fake.detach()]).double()
        real_64, fake_64 = self._mean_over_ranks(observed).unbind()
        balance = self.gamma * real_64 - fake_64
        self._k = (self._k + self.lambda_k * balance).clamp(0.0, 1.0)
        m_global = real_64 + balance.abs()
        self.schedule(m_global)
        # 0-d tensors: the loop brings them to the host at its cadence.
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "l_real": l_real.detach(),
            "l_fake": l_fake.detach(),
            "k": self._k,
            "m_global": m_global,
            "lr": self.lr,
        }

    def schedule(self, m_global: torch.Tensor | float) -> None:
        """Halve both learning rates when the moving average of M_global stalls. The average,
        its minimum and the stall count are updated on the device; the count is read only when
        its host bound says a halving may be due."""
        m_global = torch.as_tensor(m_global, dtype=torch.float64, device=self._m_ema.device)
        decay = self.m_global_decay
        self._m_ema = torch.where(
            self._m_ema.isnan(), m_global, decay * self._m_ema + (1 - decay) * m_global
        )
        improved = self._m_ema < self._m_best
        self._m_best = torch.where(improved, self._m_ema, self._m_best)
        self._since_best = torch.where(improved, 0, self._since_best + 1)
        self._since_bound += 1
        if self._since_bound < self.lr_halve_patience:
            return
        self._since_bound = self.since_best  # the one read, when a halving may be due
        if self._since_bound >= self.lr_halve_patience:
            for optimizer in (self.opt_d, self.opt_g):
                for group in optimizer.param_groups:
                    group["lr"] = max(group["lr"] / 2, self.lr_min)
            self._m_best, self._since_bound = self._m_ema, 0
            self._since_best = torch.zeros_like(self._since_best)

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "control": {
                "k": self.k,
                "m_ema": self.m_ema,
                "m_best": self.m_best,
                "since_best": self.since_best,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        control = state["control"]
        device = self._k.device
        self._k = torch.tensor(float(control["k"]), dtype=torch.float64, device=device)
        self._m_ema = torch.tensor(float(control["m_ema"]), dtype=torch.float64, device=device)
        self._m_best = torch.tensor(float(control["m_best"]), dtype=torch.float64, device=device)
        self._since_best = torch.tensor(int(control["since_best"]), device=device)
        self._since_bound = int(control["since_best"])
