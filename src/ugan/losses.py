"""GAN losses as pure functions of discriminator outputs, chosen from a registry by name.

Each loss takes raw discriminator scores (logits): `d_loss(real, fake)` is what the discriminator
minimises, `g_loss(fake)` what the generator minimises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# penalty(discriminator, real, fake) → a scalar the discriminator also minimises (× gp_weight)
Penalty = Callable[
    [Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor
]


Term = Callable[[torch.Tensor], torch.Tensor]  # a D-loss term of one batch's D outputs


@dataclass(frozen=True)
class GANLoss:
    name: str
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    clip_weights: bool = False  # WGAN's Lipschitz constraint by weight clipping
    penalty: Penalty | None = None
    # d_loss × this = the D loss on the Unbalanced GAN paper's Fig. 3 scale: `ns_d_loss` sums
    # its two BCE terms, where the paper reports their mean (0.69 = ln 2 at D = ½, its Fig. 3
    # means 0.65 / 0.69); `lsgan_d_loss` is already their mean (0.25 at D = ½; Fig. 3: 0.23 /
    # 0.25). Training keeps the sum (the factor would be a learning-rate change for the ns
    # part, and would reweigh it against a penalty); only the reported statistic converts.
    paper_d_scale: float = 1.0
    # d_loss as (its term of the real batch, its term of the fake batch), which add up to it:
    # what a split D step (`d_update: split`) minimises one after the other; None: no such terms
    d_terms: tuple[Term, Term] | None = None


def _d_loss(
    real_term: Term, fake_term: Term
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real_term(real) + fake_term(fake)

    return d_loss


def _bce_to(target: float) -> Term:
    return lambda out: F.binary_cross_entropy_with_logits(out, torch.full_like(out, target))


# D maximises log D(x) + log(1 − D(G(z))) (paper eq. 3), i.e. minimises the BCE.
NS_TERMS = (_bce_to(1.0), _bce_to(0.0))
ns_d_loss = _d_loss(*NS_TERMS)


def ns_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating G objective: maximise log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


# Least squares (Mao et al.), a-b-c = 0-1-1: ½E[(D(x)−1)²] + ½E[D(G(z))²].
LSGAN_TERMS = (lambda real: 0.5 * ((real - 1.0) ** 2).mean(), lambda fake: 0.5 * (fake**2).mean())
lsgan_d_loss = _d_loss(*LSGAN_TERMS)


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


# The critic maximises E[D(x)] − E[D(G(z))].
WGAN_TERMS = (lambda real: -real.mean(), lambda fake: fake.mean())
wgan_d_loss = _d_loss(*WGAN_TERMS)


def wgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


# E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))].
HINGE_TERMS = (lambda real: F.relu(1.0 - real).mean(), lambda fake: F.relu(1.0 + fake).mean())
hinge_d_loss = _d_loss(*HINGE_TERMS)


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def _gradient_norm_penalty(discriminator, points: torch.Tensor, rms: bool = False) -> torch.Tensor:
    """E[(‖∇ₓ D(x̂)‖₂ − 1)²] at `points`; differentiable w.r.t. D's parameters. `rms`: the
    root mean square of ∇ over x's dimensions instead of its norm (‖∇‖₂ / √dim), as GAAN's
    authors' image code takes it."""
    points = points.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(points).sum(), points, create_graph=True)
    grad = grad.flatten(1)
    size = grad.norm(2, dim=1) / (grad.shape[1] ** 0.5 if rms else 1.0)
    return ((size - 1.0) ** 2).mean()


def _per_sample(like: torch.Tensor) -> tuple[int, ...]:
    return (like.shape[0],) + (1,) * (like.dim() - 1)


def wgan_gp_penalty(
    discriminator, real: torch.Tensor, fake: torch.Tensor, rms: bool = False
) -> torch.Tensor:
    """Gulrajani et al.: on random interpolates between real and generated samples."""
    eps = torch.rand(_per_sample(real), device=real.device)
    return _gradient_norm_penalty(discriminator, eps * real + (1 - eps) * fake, rms)


def dragan_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Kodali et al.: around the data, x̂ = x + α·(0.5·std(x)·u), α, u ~ U[0, 1]."""
    perturbed = real + 0.5 * real.std() * torch.rand_like(real)
    alpha = torch.rand(_per_sample(real), device=real.device)
    return _gradient_norm_penalty(discriminator, real + alpha * (perturbed - real))


# The names params may use are `ugan.methods.catalog.LossName` (torch-free, read by config);
# tests/test_losses.py checks both list the same names.
LOSSES: dict[str, GANLoss] = {
    "ns": GANLoss("ns", ns_d_loss, ns_g_loss, paper_d_scale=0.5, d_terms=NS_TERMS),
    "lsgan": GANLoss("lsgan", lsgan_d_loss, lsgan_g_loss, d_terms=LSGAN_TERMS),
    "wgan": GANLoss("wgan", wgan_d_loss, wgan_g_loss, clip_weights=True, d_terms=WGAN_TERMS),
    "wgan-gp": GANLoss("wgan-gp", wgan_d_loss, wgan_g_loss, penalty=wgan_gp_penalty),
    "dragan": GANLoss("dragan", ns_d_loss, ns_g_loss, penalty=dragan_penalty),
    "hinge": GANLoss("hinge", hinge_d_loss, hinge_g_loss, d_terms=HINGE_TERMS),
}


def get_loss(name: str) -> GANLoss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid losses are {sorted(LOSSES)}") from None
