import math
from typing import get_args

import pytest
import torch

from ugan.losses import LOSSES, get_loss
from ugan.methods.catalog import LossName


def test_the_names_params_may_use_are_the_losses_there_are():
    # LossName lives in the torch-free catalog (config reads it); LOSSES beside the functions.
    assert sorted(get_args(LossName)) == sorted(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_losss_d_terms_add_up_to_its_d_loss(name):
    """`d_terms` is what a split D step trains; they must be the loss the joint step trains."""
    loss = get_loss(name)
    if loss.d_terms is None:  # a penalty ties both batches together: no split
        assert loss.penalty is not None
        return
    real, fake = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([-0.4, 0.9, 1.5])
    real_term, fake_term = loss.d_terms
    assert torch.equal(real_term(real) + fake_term(fake), loss.d_loss(real, fake))


def test_config_refuses_a_split_d_step_for_exactly_the_losses_without_d_terms():
    from ugan.config.checks import UNSPLIT_LOSSES  # torch-free config keeps its own list

    assert set(UNSPLIT_LOSSES) == {name for name, loss in LOSSES.items() if loss.d_terms is None}


def test_ns_against_hand_values():
    real, fake = torch.tensor([0.0]), torch.tensor([0.0])  # D = sigmoid(0) = 0.5 everywhere
    ns = get_loss("ns")
    assert math.isclose(ns.d_loss(real, fake).item(), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(ns.g_loss(fake).item(), math.log(2), rel_tol=1e-6)


def test_lsgan_and_wgan_against_hand_values():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])
    ls = get_loss("lsgan")
    assert math.isclose(ls.d_loss(real, fake).item(), 0.5 * (0 + 4) / 2 + 0.5 * (0 + 4) / 2)
    assert math.isclose(ls.g_loss(fake).item(), 0.5 * (1 + 1) / 2)
    w = get_loss("wgan")
    assert w.d_loss(real, fake).item() == pytest.approx(1.0 - 2.0)
    assert w.g_loss(fake).item() == pytest.approx(-1.0)
    assert w.clip_weights and not ls.clip_weights


def test_hinge_against_hand_values():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.0])
    hinge = get_loss("hinge")
    assert hinge.d_loss(real, fake).item() == pytest.approx((0.5 + 0.0) / 2 + (0.0 + 1.0) / 2)
    assert hinge.g_loss(fake).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["wgan-gp", "dragan"])
def test_gradient_penalties_for_a_linear_critic(name):
    # D(x) = w·x has gradient w everywhere, so the penalty is (‖w‖ − 1)² at any point.
    w = torch.tensor([3.0, 4.0])
    critic = lambda x: x.flatten(1) @ w  # noqa: E731
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    assert get_loss(name).penalty(critic, real, fake).item() == pytest.approx((5.0 - 1.0) ** 2)


def test_penalty_reaches_the_discriminator_parameters():
    d = torch.nn.Linear(4, 1)
    penalty = get_loss("wgan-gp").penalty(
        lambda x: d(x).squeeze(1), torch.randn(6, 4), torch.randn(6, 4)
    )
    penalty.backward()
    assert d.weight.grad is not None and d.weight.grad.abs().sum() > 0


def test_unknown_loss_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid losses are \['dragan', 'hinge', 'lsgan', 'ns'"):
        get_loss("vanilla")
    assert set(LOSSES) == {"ns", "lsgan", "wgan", "wgan-gp", "dragan", "hinge"}
