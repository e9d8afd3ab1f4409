"""RFGAN (Bang & Shim 2018): a GAN whose discriminator also sees representative features.

The denoising autoencoder of `ugan.dae` is pre-trained in its own stage and then frozen. The
discriminator concatenates its own last features h2 (a trainable `DownTrunk`) with the frozen
encoder's features h1 of the same input and maps [h2, h1] to one logit with a linear layer
(§3.1, Figure 1: Y = σ(h1 w1 + h2 w2)). Gradients flow *through* the encoder to its input (so the
generator learns from both kinds of features, and gradient penalties see the whole critic), but
never into its parameters, which stay fixed and in eval mode.

Any loss of the registry applies (the paper: ns, lsgan, dragan, wgan-gp); its penalty, if any,
is taken on the whole discriminator, weight clipping (wgan) on the trainable part only. One step
is `n_critic` discriminator updates followed by `rfgan.g_updates` generator updates (the
reference code: 1 and 2; WGAN-GP: 5 and 1).

The generator is the dcgan `Generator`, from the run's init file (random recipe or the
transferred VAE decoder), so RFGAN has an unbalanced variant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ugan.device import seed_everything
from ugan.losses import GANLoss, get_loss
from ugan.methods.base import register
from ugan.nets import ArchConfig, Generator, init_weights
from ugan.nets.dcgan import DownTrunk
from ugan.resume import ResumeMismatchError


class RFDiscriminator(nn.Module):
    """image (N, C, H, W) → one logit per sample, from [h2 (trainable), h1 (frozen encoder)]."""

    def __init__(self, cfg: ArchConfig, encoder: DownTrunk):
        super().__init__()
        self.cfg = cfg
        self.trunk = DownTrunk(cfg)  # (N, C, H, W) → (N, F): discriminative features h2
        self.encoder = encoder.requires_grad_(False).eval()  # (N, C, H, W) → (N, F_e): h1
        # (N, F + F_e) → (N, 1)
        self.head = nn.Linear(self.trunk.out_features + encoder.out_features, 1)

    def train(self, mode: bool = True) -> RFDiscriminator:
        super().train(mode)
        self.encoder.eval()  # fixed features: no dropout, the DAE's batch-norm statistics
        return self

    def trainable(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.head.parameters()]

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([self.trunk(x, y), self.encoder(x, y)], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y)).squeeze(1)


@register("rfgan")
class RFGANMethod:
    prior = "normal"
    inits = ("random", "vae")

    @classmethod
    def build(cls, arch: ArchConfig, run, generator_init: dict, init_std: float) -> RFGANMethod:
        from ugan.dae import DAE_PATH, load_frozen_encoder  # ugan.dae imports the trainer

        encoder = load_frozen_encoder(DAE_PATH, arch)
        seed_everything(run.gan.seed)  # D first, then a random G, as for method gan
        discriminator = RFDiscriminator(arch, encoder)
        init_weights(discriminator.trunk, init_std)
        init_weights(discriminator.head, init_std)
        generator = Generator(arch)
        if "state_dict" in generator_init:  # transferred (or given) weights
            generator.load_state_dict(generator_init["state_dict"])
        else:  # a random-init recipe: drawn from this run's seed, after D
            init_weights(generator, generator_init.get("init_std", init_std))
        optim = run.gan.optim
        return cls(
            generator,
            discriminator,
            get_loss(run.gan.loss),
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            n_critic=run.gan.n_critic,
            g_updates=run.gan.rfgan.g_updates,
            clip_value=run.gan.clip_value,
            gp_weight=run.gan.gp_weight,
        )

    def __init__(
        self,
        generator: Generator,
        discriminator: RFDiscriminator,
        loss: GANLoss,
        *,
        lr: float,
        betas: tuple[float, float],
        n_critic: int = 1,
        g_updates: int = 2,
        clip_value: float = 0.01,
        gp_weight: float = 10.0,
    ):
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.n_critic = n_critic
        self.g_updates = g_updates
        self.clip_value = clip_value
        self.gp_weight = gp_weight
        self.latent_dim = generator.cfg.latent_dim
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(discriminator.trainable(), lr=lr, betas=betas)

    def to(self, device) -> RFGANMethod:
        self.generator.to(device)
        self.discriminator.to(device)
        return self

    def _noise(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(batch, self.latent_dim, device=like.device)

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        conditional = self.generator.cfg.num_classes > 0
        # (1) Discriminator (trunk + head): minimise loss.d_loss on [h2, h1] logits.
        for _ in range(self.n_critic):
            real, labels = next_batch()
            y = labels if conditional else None
            with torch.no_grad():
                fake = self.generator(self._noise(real.shape[0], real), y)
            d_real = self.discriminator(real, y)
            d_fake = self.discriminator(fake, y)
            d_loss = self.loss.d_loss(d_real, d_fake)
            if self.loss.penalty is not None:
                critic = lambda x, y=y: self.discriminator(x, y)  # noqa: E731
                d_loss = d_loss + self.gp_weight * self.loss.penalty(critic, real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            if self.loss.clip_weights:
                with torch.no_grad():
                    for p in self.discriminator.trainable():
                        p.clamp_(-self.clip_value, self.clip_value)

        # (2) Generator, `g_updates` times: minimise loss.g_loss through both feature paths.
        g_losses = []
        for _ in range(self.g_updates):
            fake = self.generator(self._noise(real.shape[0], real), y)
            g_loss = self.loss.g_loss(self.discriminator(fake, y))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
            g_losses.append(g_loss.detach())
        # 0-d tensors: the loop brings them to the host at its cadence.
        return {
            "d_loss": d_loss.detach(),
            "g_loss": torch.stack(g_losses).mean(),
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
        saved = state["discriminator"]
        for key, value in self.discriminator.encoder.state_dict().items():
            if not torch.equal(saved[f"encoder.{key}"].to(value.device), value):
                raise ResumeMismatchError(
                    "the saved state was trained with another DAE encoder than the one in "
                    "models/dae.pt (pretrain_dae ran since); start the run afresh "
                    "(UGAN_FRESH_START=1)"
                )
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(saved)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
