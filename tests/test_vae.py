import math

import torch

from ugan.models.vae import vae_loss


def test_vae_loss_matches_hand_computation():
    # One sample, two pixels. x = [-1, 1] → targets [0, 1]; logits a = [0, ln 3 / 2] so that
    # the decoded probabilities sigmoid(2a) are [0.5, 0.75].
    x = torch.tensor([[[[-1.0, 1.0]]]])
    logits = torch.tensor([[[[0.0, math.log(3.0) / 2.0]]]])
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    loss = vae_loss(x, logits, mu, logvar)
    recon = -math.log(0.5) - math.log(0.75)
    kl = -0.5 * ((1 + 0 - 1 - 1) + (1 + math.log(2.0) - 0 - 2.0))
    assert math.isclose(loss.recon.item(), recon, rel_tol=1e-5)
    assert math.isclose(loss.kl.item(), kl, rel_tol=1e-5)
    assert math.isclose(loss.total.item(), recon + kl, rel_tol=1e-5)


def test_vae_loss_averages_over_batch():
    x = torch.rand(4, 1, 3, 3) * 2 - 1
    logits, mu, logvar = torch.randn(4, 1, 3, 3), torch.randn(4, 5), torch.randn(4, 5)
    whole = vae_loss(x, logits, mu, logvar)
    parts = [
        vae_loss(x[i : i + 1], logits[i : i + 1], mu[i : i + 1], logvar[i : i + 1])
        for i in range(4)
    ]
    assert torch.isclose(whole.total, sum(p.total for p in parts) / 4)
