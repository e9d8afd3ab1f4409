import math

import pytest
import torch

from ugan.losses import LOSSES, get_loss


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


def test_unknown_loss_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid losses are \['lsgan', 'ns', 'wgan'\]"):
        get_loss("vanilla")
    assert set(LOSSES) == {"ns", "lsgan", "wgan"}
