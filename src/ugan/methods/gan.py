"""Ordinary and Unbalanced GANs: the same step; they differ only in the generator's init.

`GANMethod` is also the base of methods that change only what the discriminator is (RFGAN):
they override `discriminator_maker`, `d_parameters` and `options`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from ugan.core.device import seed_everything
from ugan.losses import GANLoss, get_loss
from ugan.methods.base import draw_latent, run_prior
from ugan.nets.family import critic_norm, family_of


class GANMethod:
    prior = "normal"
    g_updates = 1  # generator updates per step

    @classmethod
    def discriminator_maker(cls, arch, run, resources: dict) -> Callable[[float], nn.Module]:
        """What draws a fresh discriminator (given the init std). Called before the run's
        seed is set, so it may load files without touching the random stream."""
        nets = family_of(arch)
        norm = critic_norm(cls.penalised(run), run.gan.critic_norm)

        def make(init_std: float) -> nn.Module:
            discriminator = nets.discriminator(arch, norm=norm)
            nets.init(discriminator, init_std, arch)
            return discriminator

        return make

    @staticmethod
    def penalised(run) -> bool:
        """Whether the run's loss takes a gradient penalty through D (its critic then has no
        batch norm: `ugan.nets.family.critic_norm`)."""
        return get_loss(run.gan.loss).penalty is not None and run.gan.gp_weight > 0

    @classmethod
    def options(cls, run) -> dict:
        """Keyword arguments of the constructor taken from the run's params."""
        gan = run.gan
        return {
            "n_critic": gan.n_critic,
            "clip_value": gan.clip_value,
            "gp_weight": gan.gp_weight,
            "d_update": gan.d_update,
        }

    @classmethod
    def build(cls, arch, run, generator_init: dict, init_std: float, **resources) -> GANMethod:
        """Discriminator first, from the run's seed, so runs that share a seed share D's init
        whatever their generator init; a random generator is drawn next from the same stream."""
        nets = family_of(arch)
        make_discriminator = cls.discriminator_maker(arch, run, resources)
        seed_everything(run.gan.seed)
        discriminator = make_discriminator(init_std)
        generator = nets.generator(arch)
        if "state_dict" in generator_init:  # transferred (or given) weights
            generator.load_state_dict(generator_init["state_dict"])
        else:  # a random-init recipe: drawn from this run's seed, after D
            nets.init(generator, generator_init.get("init_std", init_std), arch)
        optim = run.gan.optim
        return cls(
            generator,
            discriminator,
            get_loss(run.gan.loss),
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            weight_decay=optim.weight_decay,
            prior=run_prior(run, generator_init, cls.prior),
            **cls.options(run),
        )

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        *,
        lr: float,
        betas: tuple[float, float],
        weight_decay: float = 0.0,
        n_critic: int = 1,
        clip_value: float = 0.01,
        gp_weight: float = 10.0,
        prior: str | None = None,
        d_update: str = "joint",
    ):
        if d_update == "split" and loss.d_terms is None:
            raise ValueError(f"loss {loss.name!r} has no separate real and fake D terms to split")
        self.d_update = d_update
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.n_critic = n_critic
        self.clip_value = clip_value
        self.gp_weight = gp_weight
        self.prior = prior or type(self).prior
        self.latent_dim = generator.cfg.latent_dim
        adam = partial(torch.optim.Adam, lr=lr, betas=betas, weight_decay=weight_decay)
        self.opt_g = adam(generator.parameters())
        self.opt_d = adam(self.d_parameters())

    @property
    def twice_differentiated(self) -> dict[str, str]:
        """Nets whose graph a step differentiates twice (a gradient penalty's create_graph
        backward) → why; torch.compile and torch's CUDA SyncBatchNorm have no double backward."""
        if self.loss.penalty is None:
            return {}
        return {"discriminator": f"loss {self.loss.name!r} (its gradient penalty)"}

    def d_parameters(self) -> list[nn.Parameter]:
        """The discriminator's trainable parameters (optimised, and clipped for WGAN)."""
        return list(self.discriminator.parameters())

    def to(self, device) -> GANMethod:
        self.generator.to(device)
        self.discriminator.to(device)
        return self

    def _noise(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return draw_latent(batch, self.latent_dim, self.prior, like.device)

    # d_update → the D step: one Adam update on the sum of the real and the fake batch's terms,
    # or Keras-GAN's two `train_on_batch` calls (real batch, then fake batch: two updates a step,
    # each loss taken before its own update; batch norm sees each batch alone either way)
    D_STEPS = {"joint": "_joint_d_step", "split": "_split_d_step"}

    def _update_d(self, loss: torch.Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        if self.loss.clip_weights:
            with torch.no_grad():
                for p in self.d_parameters():
                    p.clamp_(-self.clip_value, self.clip_value)

    def _joint_d_step(self, real, fake, y) -> tuple[torch.Tensor, ...]:
        d_real = self.discriminator(real, y)
        d_fake = self.discriminator(fake, y)
        d_loss = self.loss.d_loss(d_real, d_fake)
        if self.loss.penalty is not None:
            critic = lambda x, y=y: self.discriminator(x, y)  # noqa: E731
            d_loss = d_loss + self.gp_weight * self.loss.penalty(critic, real, fake)
        self._update_d(d_loss)
        return d_loss, d_real, d_fake

    def _split_d_step(self, real, fake, y) -> tuple[torch.Tensor, ...]:
        real_term, fake_term = self.loss.d_terms
        d_real = self.discriminator(real, y)
        real_loss = real_term(d_real)
        self._update_d(real_loss)
        d_fake = self.discriminator(fake, y)
        fake_loss = fake_term(d_fake)
        self._update_d(fake_loss)
        return real_loss.detach() + fake_loss.detach(), d_real, d_fake

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        # (1) Discriminator: minimise loss.d_loss, i.e. maximise log D(x) + log(1 − D(G(z))).
        conditional = self.generator.cfg.num_classes > 0
        for _ in range(self.n_critic):
            real, labels = next_batch()
            # Conditional: fakes carry the real batch's labels (the data's label distribution).
            y = labels if conditional else None
            with torch.no_grad():
                fake = self.generator(self._noise(real.shape[0], real), y)
            d_loss, d_real, d_fake = getattr(self, self.D_STEPS[self.d_update])(real, fake, y)

        # (2) Generator, `g_updates` times: minimise loss.g_loss, e.g. maximise log D(G(z)).
        # D's own weight gradients would be discarded (zeroed before D's next backward): with
        # D frozen, the backward computes only what reaches G. Same result, less work.
        g_losses = []
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        self.discriminator.requires_grad_(False)
        try:
            for _ in range(self.g_updates):
                fake = self.generator(self._noise(real.shape[0], real), y)
                g_loss = self.loss.g_loss(self.discriminator(fake, y))
                self.opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                self.opt_g.step()
                g_losses.append(g_loss.detach())
        finally:
            for p, flag in zip(self.discriminator.parameters(), flags, strict=True):
                p.requires_grad_(flag)
        # 0-d tensors, not floats: the loop brings them to the host at its cadence (a CUDA
        # step then never waits for the GPU).
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_losses[0] if len(g_losses) == 1 else torch.stack(g_losses).mean(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
