"""GAAN (Tran, Bui & Cheung 2018): an autoencoder (encoder E, generator G as decoder) trained
jointly with the GAN, in the order of Algorithm 1. Each step, on one minibatch x and one z:

1. E and G, D fixed: minimise R + λ_r W                                          (eq. 3)
   The space R and f are measured in is the net family's (`gaan_feature_space`), unless
   `gaan.space` picks `features` or `data`:
   - images (§4.2, "we use Φ(x) instead x for the reconstruction loss and the AE
     regularization"): R = mean ‖Φ(x) − Φ(G(E(x)))‖², Φ the input of D's output layer (its
     last convolution features), the mean over batch and features. Φ is taken with D's dropout
     off, so that R measures the reconstruction, not two different dropout masks.
   - 2-D points (§4.1, eq. 3 as written): R = E_x ‖x − G(E(x))‖²₂ in the data space, the
     squared norm summed over the data's dimensions; D plays no part in R or W.
   W = (f − λ_w g)², f = M_d(E_x x − E_z G(z)), g = M_d(E_x E(x) − E_z z)          (eqs. 5-7)
       M_d averages over dimensions; x and G(z) are replaced by Φ(x) and Φ(G(z)) for images;
       λ_w = √(d / D), d the latent and D the feature (images) or data dimension, unless
       `gaan.lambda_w` is set. The toy settings of §4.1 are λ_r = λ_p = 0.1, λ_w = 1
       (profiles/modes.yaml, the schema's default mode variants); the image settings of §4.2
       λ_r = λ_p = 1 are the `gan.gaan` defaults.
2. D, E and G fixed: maximise eq. 4, i.e. minimise
   BCE(D(x), real) + BCE(D(G(z)), fake) + BCE(D(G(E(x))), real) + λ_p E[(‖∇D(x̂)‖₂ − 1)²]
   — the reconstructions are labelled *real*; x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1] (the WGAN-GP
   penalty; the paper's squared norm inside the bracket is read as WGAN-GP's norm). With
   λ_p > 0 the conv D has layer norm instead of batch norm (`ugan.nets.family.critic_norm`).
3. G once more, E and D fixed: maximise log σ(D(G(z)))  (the non-saturating objective).

`gaan.objective: authors-code` trains steps 2 and 3 as the authors' image code does
(`OBJECTIVES`: D's real / reconstructed terms 0.95 / 0.05, the penalty on ∇D's RMS over the
pixels, G's loss |E σ(D(x)) − E σ(D(G(z)))|); the default `paper` is the above.
`gaan.batches: per-update` draws a fresh minibatch x and noise z for each of the three updates,
as both authors' codes do (tntrung/gan `gaan_mnist`, `gaan_image`); the default `one` is
Algorithm 1's single x^m, z^m per step.

Eq. 4 is the cross-entropy objective, so the run's `loss` must be `ns`; the penalty is GAAN's own
(`gaan.lambda_p`), not `gp_weight`. Separate Adam optimizers for (E, G), D and G, each with the
run's `optim`. The prior is the paper's U[-1, 1] for a random generator and, for a transferred
VAE decoder (the unbalanced variant), the decoder's own prior (the init file's, N(0, I)),
unless `gan.prior` says otherwise (`ugan.methods.base.run_prior`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from ugan.core.device import seed_everything
from ugan.losses import ns_g_loss, wgan_gp_penalty
from ugan.methods.base import draw_latent, run_prior
from ugan.nets.family import critic_norm, family_of


def gaan_d_loss(
    d_real: torch.Tensor,
    d_recon: torch.Tensor,
    d_fake: torch.Tensor,
    weights: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """−(eq. 4 without the penalty): real and reconstructed logits → target 1, fakes → 0;
    `weights` scale the real and the reconstructed term."""
    ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_fake)
    return (
        weights[0] * F.binary_cross_entropy_with_logits(d_real, ones)
        + F.binary_cross_entropy_with_logits(d_fake, zeros)
        + weights[1] * F.binary_cross_entropy_with_logits(d_recon, torch.ones_like(d_recon))
    )


def mean_distance_g_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """|E σ(D(x)) − E σ(D(G(z)))|: G's loss in GAAN's authors' image code."""
    return (torch.sigmoid(d_real).mean() - torch.sigmoid(d_fake).mean()).abs()


@dataclass(frozen=True)
class Objective:
    """What of steps 2 and 3 a `gaan.objective` sets."""

    d_weights: tuple[float, float]  # D's real and reconstructed terms
    rms_penalty: bool  # the penalty on ∇D's root mean square over pixels, not its norm
    g_loss: Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]  # D(x), D(G(z)) → loss
    reads_real: bool  # whether g_loss needs D(x) (else it gets None)


# "paper": Algorithm 1 and eq. 4 as written. "authors-code": as tntrung/gan `gaan_image/gaan.py`
# trains images ("lower weights for d_recon to achieve sharper generated images, slightly
# improved from the original paper"; the penalty on the RMS of the gradient; G's loss the
# distance of D's mean outputs). On Stacked MNIST's K/4 nets it moved GAAN from 12 to 136 modes
# in 2,000 steps (README, Stacked MNIST).
OBJECTIVES = {
    "paper": Objective((1.0, 1.0), False, lambda _, d_fake: ns_g_loss(d_fake), reads_real=False),
    "authors-code": Objective((0.95, 0.05), True, mean_distance_g_loss, reads_real=True),
    # their earlier MNIST code (tntrung/gan `gaan_mnist`, after WGAN-GP's MNIST code, which §4.2
    # says the MNIST experiments build on): the same but D's real / reconstructed terms 0.5 / 0.5
    "authors-mnist-code": Objective((0.5, 0.5), True, mean_distance_g_loss, reads_real=True),
}


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Hold `module`'s parameters fixed: no gradient is computed for them inside the block."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


@contextlib.contextmanager
def without_dropout(module: nn.Module) -> Iterator[None]:
    """Switch `module`'s dropout layers off inside the block; other layers keep their mode."""
    layers = [m for m in module.modules() if isinstance(m, nn.Dropout) and m.training]
    for layer in layers:
        layer.eval()
    try:
        yield
    finally:
        for layer in layers:
            layer.train()


class GAANMethod:
    prior = "uniform"
    # D's gradient penalty (step 2) is differentiated again: see GANMethod.twice_differentiated
    twice_differentiated = MappingProxyType(
        {"discriminator": "method 'gaan' (its gradient penalty)"}
    )

    @classmethod
    def build(cls, arch, run, generator_init: dict, init_std: float, **resources) -> GAANMethod:
        params = run.gan.gaan
        nets = family_of(arch)
        seed_everything(run.gan.seed)  # D first, then E, then a random G
        # the WGAN-GP penalty of eq. 4 goes through D: no batch norm in D when λ_p > 0
        norm = critic_norm(params.lambda_p > 0, run.gan.critic_norm)
        discriminator = nets.discriminator(arch, norm=norm)
        nets.init(discriminator, init_std, arch)
        encoder = nets.latent_encoder(arch)
        nets.init(encoder, init_std, arch)
        generator = nets.generator(arch)
        if "state_dict" in generator_init:
            generator.load_state_dict(generator_init["state_dict"])
        else:
            nets.init(generator, generator_init.get("init_std", init_std), arch)
        # R and W's f on D's features (images) or on the data itself (2-D points)
        feature_space = {"auto": nets.gaan_feature_space, "features": True, "data": False}[
            params.space
        ]
        lambda_w = params.lambda_w
        if lambda_w is None:  # √(d / D): latent vs feature (or data) dimension
            side = discriminator.trunk.out_features if feature_space else arch.data_dim
            lambda_w = math.sqrt(arch.latent_dim / side)
        optim = run.gan.optim
        return cls(
            generator,
            discriminator,
            encoder,
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            weight_decay=optim.weight_decay,
            lambda_r=params.lambda_r,
            lambda_p=params.lambda_p,
            lambda_w=lambda_w,
            prior=run_prior(run, generator_init, cls.prior),
            feature_space=feature_space,
            objective=params.objective,
            fresh_batches=params.batches == "per-update",
        )

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        encoder: nn.Module,
        *,
        lr: float,
        betas: tuple[float, float],
        weight_decay: float = 0.0,
        lambda_r: float = 1.0,
        lambda_p: float = 1.0,
        lambda_w: float = 1.0,
        prior: str = "uniform",
        feature_space: bool = True,
        objective: str = "paper",
        fresh_batches: bool = False,
    ):
        self.generator = generator
        self.discriminator = discriminator
        self.encoder = encoder
        self.lambda_r = lambda_r
        self.lambda_p = lambda_p
        self.lambda_w = lambda_w
        self.prior = prior
        self.feature_space = feature_space
        self.objective = OBJECTIVES[objective]
        self.fresh_batches = fresh_batches
        self.latent_dim = generator.cfg.latent_dim
        ae_params = [*encoder.parameters(), *generator.parameters()]
        adam = partial(torch.optim.Adam, lr=lr, betas=betas, weight_decay=weight_decay)
        self.opt_ae = adam(ae_params)
        self.opt_d = adam(discriminator.parameters())
        self.opt_g = adam(generator.parameters())

    def to(self, device) -> GAANMethod:
        for net in (self.generator, self.discriminator, self.encoder):
            net.to(device)
        return self

    def _noise(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return draw_latent(batch, self.latent_dim, self.prior, like.device)

    def _draw(self, next_batch: Callable) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """x, its labels (None for an unconditional G) and z for one update."""
        real, labels = next_batch()
        y = labels if self.generator.cfg.num_classes > 0 else None
        return real, y, self._noise(real.shape[0], real)

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        real, y, z = self._draw(next_batch)  # per-update: (2) and (3) draw their own below
        D, E, G = self.discriminator, self.encoder, self.generator

        # (1) E, G: minimise R + λ_r W with D fixed (Algorithm 1, line 6).
        with frozen(D), without_dropout(D):
            code = E(real, y)
            recon = G(code, y)
            fake = G(z, y)
            if self.feature_space:  # images: Φ(x) instead of x (§4.2)
                phi_real = D.features(real, y)
                recon_loss = F.mse_loss(D.features(recon, y), phi_real)
                f = phi_real.mean() - D.features(fake, y).mean()
            else:  # 2-D points: the data space (§4.1, eq. 3)
                recon_loss = (real - recon).pow(2).flatten(1).sum(1).mean()
                f = real.mean() - fake.mean()
            g = code.mean() - z.mean()
            w_reg = (f - self.lambda_w * g) ** 2
            ae_loss = recon_loss + self.lambda_r * w_reg
            self.opt_ae.zero_grad(set_to_none=True)
            ae_loss.backward()
            self.opt_ae.step()

        # (2) D: maximise eq. 4, reconstructions labelled real (line 8).
        if self.fresh_batches:
            real, y, z = self._draw(next_batch)
        with torch.no_grad():
            recon = G(E(real, y), y)
            fake = G(z, y)
        d_real, d_recon, d_fake = D(real, y), D(recon, y), D(fake, y)
        critic = lambda x: D(x, y)  # noqa: E731
        penalty = wgan_gp_penalty(critic, real, fake, rms=self.objective.rms_penalty)
        d_loss = gaan_d_loss(d_real, d_recon, d_fake, self.objective.d_weights)
        d_loss = d_loss + self.lambda_p * penalty
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # (3) G once more: maximise log σ(D(G(z))) with E, D fixed (line 10).
        if self.fresh_batches:
            real, y, z = self._draw(next_batch)
        with frozen(D):
            d_now = D(real, y) if self.objective.reads_real else None  # D after its update
            g_loss = self.objective.g_loss(d_now, D(G(z, y), y))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
        # 0-d tensors: the loop brings them to the host at its cadence.
        values = {"d_loss": d_loss, "g_loss": g_loss, "ae_loss": ae_loss}
        values |= {"recon_loss": recon_loss, "w_reg": w_reg, "gp": penalty}
        values |= {"d_real": d_real.mean(), "d_recon": d_recon.mean(), "d_fake": d_fake.mean()}
        return {name: value.detach() for name, value in values.items()}

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "encoder": self.encoder.state_dict(),
            "opt_ae": self.opt_ae.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.encoder.load_state_dict(state["encoder"])
        self.opt_ae.load_state_dict(state["opt_ae"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])
