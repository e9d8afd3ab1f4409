"""BEGAN (Berthelot et al. 2017): k_t control, M_global, the lr schedule, fresh-net diversity,
the paper's layout and a state round trip, on tiny nets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from method_helpers import batches, random_init, tiny_run

from ugan.config.load import parse_params
from ugan.config.profiles import apply_profile, load_profile
from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.methods.began import BEGANMethod
from ugan.nets.arch import ArchConfig
from ugan.training.gan import build_method


def _began(arch, **began) -> BEGANMethod:
    return build_method(arch, tiny_run("began", began=began), random_init(arch), 0.02)


def test_began_k_rises_when_gamma_L_real_exceeds_L_fake(tiny_arch, tiny_data):
    # Real batches are uniform noise, which an untrained autoencoder reconstructs badly, while
    # the untrained generator's smooth output is easy: γ = 1 makes γ·L(x) − L(G(z)) > 0.
    m = _began(tiny_arch, gamma=1.0, lambda_k=0.01)
    next_batch = batches(tiny_data)
    for _ in range(3):
        k_before = m.k
        out = m.train_step(next_batch)
        balance = 1.0 * out["l_real"] - out["l_fake"]
        assert balance > 0
        assert out["k"] == pytest.approx(min(max(k_before + 0.01 * balance, 0.0), 1.0))
        assert out["k"] > k_before


def test_began_k_falls_when_L_fake_exceeds_gamma_L_real(tiny_arch, tiny_data):
    m = _began(tiny_arch, gamma=0.0, lambda_k=0.01, k_init=0.5)  # γ·L(x) − L(G(z)) = −L(G(z))
    next_batch = batches(tiny_data)
    for _ in range(3):
        k_before = m.k
        out = m.train_step(next_batch)
        assert out["k"] == pytest.approx(k_before - 0.01 * out["l_fake"]) and out["k"] < k_before


@pytest.mark.parametrize(("gamma", "k_init", "bound"), [(1.0, 0.9, 1.0), (0.0, 0.1, 0.0)])
def test_began_k_is_clipped_to_the_unit_interval(gamma, k_init, bound, tiny_arch, tiny_data):
    m = _began(tiny_arch, gamma=gamma, lambda_k=1000.0, k_init=k_init)
    next_batch = batches(tiny_data)
    ks = [m.train_step(next_batch)["k"] for _ in range(3)]
    assert ks == [bound] * 3


def test_began_m_global_is_l_real_plus_the_control_error(tiny_arch, tiny_data):
    m = _began(tiny_arch, gamma=0.3)
    out = m.train_step(batches(tiny_data))
    expected = out["l_real"] + abs(0.3 * out["l_real"] - out["l_fake"])
    assert out["m_global"] == pytest.approx(expected)
    assert out["d_loss"] == pytest.approx(out["l_real"] - 0.0 * out["l_fake"])  # k_0 = 0
    assert out["g_loss"] == pytest.approx(out["l_fake"])


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (28, 3), (64, 3)])
def test_a_fresh_began_generator_varies_with_z(size, channels):
    """Xavier init as the authors' code: per-pixel std across z measured 0.11-0.24 at n = 16
    and 64 (PyTorch's default init: 0.001-0.005, a constant image that BEGAN cannot leave)."""
    torch.manual_seed(0)
    cfg = ArchConfig(image_size=size, channels=channels, latent_dim=64, base_channels=16)
    m = build_method(cfg, tiny_run("began"), random_init(cfg), 0.02)
    with torch.no_grad():
        x = m.generator(m._noise(256, torch.empty(0)))
    assert x.std(dim=0).mean().item() > 0.05


def test_began_lr_halving_waits_longer_than_k_t_takes_to_move():
    """The default patience is ≥ 1 / λ_k steps, the time k_t needs to move by one unit of the
    balance: a shorter stall of M_global measures the controller still settling, not
    convergence (the authors' code halves every 100,000 steps)."""
    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "params.yaml").read_text())
    _, methods = apply_profile(base, load_profile("methods", root / "profiles"))
    for began in (parse_params({}).gan.began, methods.run("began").gan.began):
        assert began.lr_halve_patience >= 1 / began.lambda_k


def test_began_halves_the_learning_rate_when_m_global_stalls(tiny_arch):
    m = _began(tiny_arch, m_global_decay=0.0, lr_halve_patience=2, lr_min=4e-5)
    lr0 = m.lr
    for value in (3.0, 2.0, 1.0):  # improving: no change
        m.schedule(value)
    assert m.lr == lr0
    m.schedule(1.5)
    assert m.lr == lr0  # one step without a new minimum < patience
    m.schedule(1.2)
    assert m.lr == lr0 / 2 and m.opt_g.param_groups[0]["lr"] == lr0 / 2
    for value in (1.3, 1.3, 1.3, 1.3, 1.3, 1.3):  # keeps stalling: halves down to the floor
        m.schedule(value)
    assert m.lr == 4e-5


def test_began_state_round_trip_restores_k_and_the_schedule(tiny_arch, tiny_data, tmp_path):
    a = _began(tiny_arch, lambda_k=0.05, lr_halve_patience=1)
    next_batch = batches(tiny_data)
    for _ in range(3):
        a.train_step(next_batch)
    save_checkpoint(tmp_path / "state.pt", a.state_dict())  # through weights_only loading
    b = _began(tiny_arch, lambda_k=0.05, lr_halve_patience=1)  # hyper-parameters: config
    b.load_state_dict(load_checkpoint(tmp_path / "state.pt"))
    assert b.k == a.k > 0
    assert (b.m_ema, b.m_best, b.since_best, b.lr) == (a.m_ema, a.m_best, a.since_best, a.lr)
    x = next_batch()
    torch.manual_seed(0)
    out_a = a.train_step(lambda: x)
    torch.manual_seed(0)
    out_b = b.train_step(lambda: x)
    assert out_a == out_b


def test_began_nets_have_the_paper_layout(tiny_arch):
    from ugan.nets.began import BEGANDiscriminator, began_scales

    d = BEGANDiscriminator(tiny_arch)
    assert [began_scales(s) for s in (28, 32, 64)] == [2, 2, 3]
    kinds = {type(m).__name__ for m in d.modules()}
    assert {"ELU", "Upsample", "Linear"} <= kinds
    assert not kinds & {"BatchNorm2d", "BatchNorm1d", "ConvTranspose2d", "Dropout"}
    convs = [m for m in d.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs if c.stride == (2, 2)] == [8, 12]  # n → 2n → 3n
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert d(x).shape == x.shape and d.encoder(x).shape == (2, tiny_arch.latent_dim)
