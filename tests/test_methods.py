"""BEGAN, RFGAN and GAAN: one step each on tiny nets, the properties each method must keep,
resume of their state, and `train_gan` end to end for every registered method."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
import yaml

from ugan.config.load import parse_params
from ugan.config.profiles import apply_profile, load_profile
from ugan.config.schema import DAEParams
from ugan.core.errors import ConfigError, ResumeMismatchError
from ugan.core.io import load_checkpoint, save_checkpoint
from ugan.core.paths import DAE_PATH, RunLayout
from ugan.data.batches import InfiniteBatches
from ugan.methods.began import BEGANMethod
from ugan.methods.catalog import combinations, combinations_markdown
from ugan.methods.gaan import gaan_d_loss
from ugan.methods.table import METHODS, get_method
from ugan.models.dae import DenoisingAE, load_frozen_encoder
from ugan.nets.dcgan import ArchConfig, Generator, init_weights
from ugan.nets.generator_file import GENERATORS, generator_payload, load_generator
from ugan.tracking.stage_run import StageRun
from ugan.training.dae import pretrain_dae
from ugan.training.gan import build_method, train_gan

TINY_GAN = {"steps": 4, "checkpoint_every": 2, "batch_size": 16, "log_every": 1}


def _run(method: str, init: str = "random", **overrides):
    raw = {"gan": TINY_GAN, "runs": {"r": {"init": init, "method": method, **overrides}}}
    return parse_params(raw).run("r")


def _random_init(arch) -> dict:
    """What stages/init_random.py writes: a recipe, no weights."""
    return {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}


def _vae_init(arch, seed: int = 7) -> dict:
    """Stands in for models/init/vae.pt: a Generator's weights (the transferred decoder)."""
    torch.manual_seed(seed)
    generator = Generator(arch)
    init_weights(generator)
    return generator_payload(generator)


def _batches(data, batch_size: int = 16):
    return InfiniteBatches(*data.train, batch_size, seed=0).next


@pytest.fixture
def dae_file(tiny_arch, tmp_path, monkeypatch) -> Path:
    """models/dae.pt in a fresh project folder (the cwd), from an untrained DAE."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    dae = DenoisingAE(tiny_arch)
    save_checkpoint(DAE_PATH, {"encoder": dae.encoder.state_dict(), "arch": tiny_arch.to_dict()})
    return tmp_path / DAE_PATH


# -- every method ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_takes_a_finite_step_that_moves_its_generator(
    method, tiny_arch, tiny_data, dae_file
):
    m = build_method(tiny_arch, _run(method), _random_init(tiny_arch), 0.02)
    before = [p.detach().clone() for p in m.generator.parameters()]
    losses = {k: float(v) for k, v in m.train_step(_batches(tiny_data)).items()}
    assert {"d_loss", "g_loss"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values()), losses
    after = list(m.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert type(m.generator) in GENERATORS.values()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_weight_decay_reaches_every_optimizer_of_every_method(method, tiny_arch, dae_file):
    """GAAN §4.1 tuned its baselines with weight decay: `optim.weight_decay` is Adam's on
    every net a method trains, and a negative one is refused by name."""
    run = _run(method, optim={"weight_decay": 1e-3})
    m = build_method(tiny_arch, run, _random_init(tiny_arch), 0.02)
    groups = [
        g for o in vars(m).values() if isinstance(o, torch.optim.Optimizer) for g in o.param_groups
    ]
    assert len(groups) >= 2 and {g["weight_decay"] for g in groups} == {1e-3}
    with pytest.raises(ConfigError, match=r"optim.weight_decay"):
        _run(method, optim={"weight_decay": -1.0})


def _cross_sample_gradient(discriminator: torch.nn.Module, x: torch.Tensor) -> float:
    """max |∂ D(x)[0] / ∂ x[1:]|: how much sample 0's score depends on the other samples."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator.train()(x)[0], x)
    return grad[1:].abs().max().item()


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("gan", {"loss": "wgan-gp", "n_critic": 5}),
        ("gan", {"loss": "dragan"}),
        ("rfgan", {"loss": "wgan-gp"}),
        ("gaan", {}),
    ],
)
def test_a_critic_under_a_gradient_penalty_scores_each_sample_alone(
    method, overrides, tiny_arch, dae_file
):
    """WGAN-GP (Gulrajani et al. §4): the penalty is on ∇_{x_i} D(x_i) per sample, so the critic
    has no batch norm (layer norm): D(x)[i] does not depend on x[j]. Without a penalty the
    discriminator keeps the paper's batch norm, which does couple the samples."""
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    m = build_method(tiny_arch, _run(method, **overrides), _random_init(tiny_arch), 0.02)
    d = m.discriminator
    assert _cross_sample_gradient(d, x) == 0.0
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in d.trunk.modules())
    plain = build_method(tiny_arch, _run("gan"), _random_init(tiny_arch), 0.02).discriminator
    assert _cross_sample_gradient(plain, x) > 1e-6


@pytest.mark.parametrize("method", ["rfgan", "gaan"])
def test_rfgan_and_gaan_start_from_the_transferred_decoder(method, tiny_arch, dae_file):
    init = _vae_init(tiny_arch)
    m = build_method(tiny_arch, _run(method, init="vae"), init, 0.02)
    state = m.generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in init["state_dict"].items())


def test_the_combination_table_and_config_agree():
    table = combinations()
    assert table["began"]["inits"] == ["random"]
    assert all(table[m]["inits"] == ["random", "vae"] for m in ("gan", "rfgan", "gaan"))
    assert table["gaan"]["losses"] == ["ns"] and table["began"]["losses"] == "own objective"
    assert {"ns", "lsgan", "dragan", "wgan-gp"} <= set(table["rfgan"]["losses"])
    rows = [re.sub(r"\s+", " ", line) for line in combinations_markdown().splitlines()]
    assert "| began | random | own objective |" in rows


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (
            {"init": "vae", "method": "began"},
            "runs.r: method 'began' cannot start from init 'vae'",
        ),
        ({"init": "random", "method": "gaan", "loss": "wgan-gp"}, "supports losses ['ns']"),
        ({"init": "random", "method": "began", "n_critic": 5}, "n_critic must be 1"),
        ({"init": "random", "method": "began", "began": {"gama": 1}}, "runs.r.began.gama"),
    ],
)
def test_config_refuses_combinations_that_do_not_exist(run, message):
    from ugan.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        parse_params({"runs": {"r": run}})
    if run.get("init") == "vae":
        assert "began: random; gaan: random, vae; gan: random, vae; rfgan: random, vae" in str(
            e.value
        )


def test_a_class_conditional_model_refuses_an_unconditional_method():
    from ugan.core.errors import ConfigError

    with pytest.raises(ConfigError, match="runs.r: method 'began' is unconditional"):
        parse_params(
            {"model": {"conditional": True}, "runs": {"r": {"init": "random", "method": "began"}}}
        )
    conditional = parse_params({"model": {"conditional": True}, "runs": {"r": {"init": "random"}}})
    assert conditional.run("r").gan.method == "gan"


def test_a_run_overrides_single_method_keys_and_keeps_the_other_defaults():
    params = parse_params(
        {
            "gan": {"began": {"lambda_k": 0.002}},
            "runs": {"b": {"init": "random", "method": "began", "began": {"gamma": 0.7}}},
        }
    )
    began = params.run("b").gan.began
    assert (began.gamma, began.lambda_k, began.k_init) == (0.7, 0.002, 0.0)


# -- BEGAN -----------------------------------------------------------------------------------


def _began(arch, **began) -> BEGANMethod:
    return build_method(arch, _run("began", began=began), _random_init(arch), 0.02)


def test_began_k_rises_when_gamma_L_real_exceeds_L_fake(tiny_arch, tiny_data):
    # Real batches are uniform noise, which an untrained autoencoder reconstructs badly, while
    # the untrained generator's smooth output is easy: γ = 1 makes γ·L(x) − L(G(z)) > 0.
    m = _began(tiny_arch, gamma=1.0, lambda_k=0.01)
    next_batch = _batches(tiny_data)
    for _ in range(3):
        k_before = m.k
        out = m.train_step(next_batch)
        balance = 1.0 * out["l_real"] - out["l_fake"]
        assert balance > 0
        assert out["k"] == pytest.approx(min(max(k_before + 0.01 * balance, 0.0), 1.0))
        assert out["k"] > k_before


def test_began_k_falls_when_L_fake_exceeds_gamma_L_real(tiny_arch, tiny_data):
    m = _began(tiny_arch, gamma=0.0, lambda_k=0.01, k_init=0.5)  # γ·L(x) − L(G(z)) = −L(G(z))
    next_batch = _batches(tiny_data)
    for _ in range(3):
        k_before = m.k
        out = m.train_step(next_batch)
        assert out["k"] == pytest.approx(k_before - 0.01 * out["l_fake"]) and out["k"] < k_before


@pytest.mark.parametrize(("gamma", "k_init", "bound"), [(1.0, 0.9, 1.0), (0.0, 0.1, 0.0)])
def test_began_k_is_clipped_to_the_unit_interval(gamma, k_init, bound, tiny_arch, tiny_data):
    m = _began(tiny_arch, gamma=gamma, lambda_k=1000.0, k_init=k_init)
    next_batch = _batches(tiny_data)
    ks = [m.train_step(next_batch)["k"] for _ in range(3)]
    assert ks == [bound] * 3


def test_began_m_global_is_l_real_plus_the_control_error(tiny_arch, tiny_data):
    m = _began(tiny_arch, gamma=0.3)
    out = m.train_step(_batches(tiny_data))
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
    m = build_method(cfg, _run("began"), _random_init(cfg), 0.02)
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
    next_batch = _batches(tiny_data)
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


# -- RFGAN -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ns", "lsgan", "dragan", "wgan-gp"])
def test_rfgan_encoder_stays_frozen_while_the_discriminator_learns(
    loss, tiny_arch, tiny_data, dae_file
):
    m = build_method(tiny_arch, _run("rfgan", loss=loss), _random_init(tiny_arch), 0.02)
    d = m.discriminator
    frozen = {k: v.clone() for k, v in d.encoder.state_dict().items()}
    trunk = {k: v.clone() for k, v in d.trunk.state_dict().items()}
    next_batch = _batches(tiny_data)
    for _ in range(2):
        m.train_step(next_batch)
        d.train()  # the loop may switch modes: the encoder must stay in eval
    assert not d.encoder.training
    assert all(p.grad is None for p in d.encoder.parameters())
    assert all(torch.equal(v, d.encoder.state_dict()[k]) for k, v in frozen.items())
    assert all(p.grad is not None for p in d.trunk.parameters())
    assert any(not torch.equal(v, d.trunk.state_dict()[k]) for k, v in trunk.items())
    assert d.head.in_features == d.trunk.out_features + d.encoder.out_features
    # The encoder is the DAE's: its features enter every discriminator output.
    loaded = load_frozen_encoder(dae_file, tiny_arch)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in frozen.items())


def test_rfgan_updates_the_generator_g_updates_times_per_step(tiny_arch, tiny_data, dae_file):
    m = build_method(
        tiny_arch, _run("rfgan", rfgan={"g_updates": 3}), _random_init(tiny_arch), 0.02
    )
    m.train_step(_batches(tiny_data))
    first = next(m.generator.parameters())
    assert m.opt_g.state[first]["step"] == 3
    assert m.opt_d.state[next(m.discriminator.trunk.parameters())]["step"] == 1


def test_rfgan_resume_refuses_a_state_trained_with_another_encoder(tiny_arch, tiny_data, dae_file):
    a = build_method(tiny_arch, _run("rfgan"), _random_init(tiny_arch), 0.02)
    a.train_step(_batches(tiny_data))
    state = a.state_dict()
    b = build_method(tiny_arch, _run("rfgan"), _random_init(tiny_arch), 0.02)
    b.load_state_dict(state)  # same DAE: fine
    assert all(torch.equal(v, b.generator.state_dict()[k]) for k, v in state["generator"].items())
    torch.manual_seed(99)  # pretrain_dae ran again: another encoder in models/dae.pt
    other = DenoisingAE(tiny_arch)
    save_checkpoint(DAE_PATH, {"encoder": other.encoder.state_dict(), "arch": tiny_arch.to_dict()})
    c = build_method(tiny_arch, _run("rfgan"), _random_init(tiny_arch), 0.02)
    with pytest.raises(ResumeMismatchError, match="another DAE encoder"):
        c.load_state_dict(state)


def test_rfgan_needs_a_dae_of_the_run_architecture(tiny_arch, tmp_path, monkeypatch):
    import dataclasses

    from ugan.core.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="models/dae.pt does not exist"):
        build_method(tiny_arch, _run("rfgan"), _random_init(tiny_arch), 0.02)
    wider = dataclasses.replace(tiny_arch, base_channels=8)
    save_checkpoint(
        DAE_PATH, {"encoder": DenoisingAE(wider).encoder.state_dict(), **{"arch": wider.to_dict()}}
    )
    with pytest.raises(ValueError, match="rerun the pretrain_dae stage"):
        build_method(tiny_arch, _run("rfgan"), _random_init(tiny_arch), 0.02)


def test_pretrain_dae_writes_an_encoder_rfgan_can_load(tiny_arch, tiny_data, tmp_path):
    params = DAEParams(steps=4, batch_size=16, log_every=2, sample_every=2)
    with StageRun("pretrain_dae", {}, log_models=False) as tracker:
        metrics = pretrain_dae(
            params,
            tiny_arch,
            tiny_data,
            tmp_path / "dae.pt",
            tmp_path / "samples",
            tracker,
            resume_root=tmp_path / "r",
        )
    assert metrics["heldout_denoising_mse"] > 0 and math.isfinite(metrics["heldout_mse"])
    assert (tmp_path / "samples/reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    encoder = load_frozen_encoder(tmp_path / "dae.pt", tiny_arch)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    history = tracker.client.get_metric_history(tracker.run_id, "dae_loss")
    assert [m.step for m in history] == [2, 4]


# -- GAAN ------------------------------------------------------------------------------------


def test_gaan_reconstructions_enter_the_discriminator_loss_as_real(tiny_arch, tiny_data):
    m = build_method(tiny_arch, _run("gaan", gaan={"lambda_p": 0.0}), _random_init(tiny_arch), 0.02)
    calls: dict[str, list] = {"D": [], "E": [], "G": []}
    for name, net in (("D", m.discriminator), ("E", m.encoder), ("G", m.generator)):
        net.register_forward_hook(
            lambda _, args, out, name=name: calls[name].append((args[0].detach(), out.detach()))
        )
    x, _ = _batches(tiny_data)()
    out = m.train_step(lambda: (x, torch.zeros(len(x), dtype=torch.long)))
    # Algorithm 1, line 8: D sees x, G(E(x)) and G(z), after the encoder/generator update
    # (E: 1st call in the AE update, 2nd here; G: G(E(x)), G(z) in the AE update, then here).
    (x_in, d_x), (recon_in, d_recon), (fake_in, d_fake) = calls["D"][:3]
    assert torch.equal(x_in, x) and torch.equal(calls["E"][1][0], x)
    assert torch.equal(calls["G"][2][0], calls["E"][1][1])  # G's input is E(x)…
    assert torch.equal(recon_in, calls["G"][2][1])  # …and D's second input is G(E(x))
    assert torch.equal(fake_in, calls["G"][3][1])
    as_real = (
        F.binary_cross_entropy_with_logits(d_x, torch.ones_like(d_x))
        + F.binary_cross_entropy_with_logits(d_recon, torch.ones_like(d_recon))
        + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    )
    as_fake = (
        as_real
        - F.binary_cross_entropy_with_logits(d_recon, torch.ones_like(d_recon))
        + F.binary_cross_entropy_with_logits(d_recon, torch.zeros_like(d_recon))
    )
    assert float(out["d_loss"]) == pytest.approx(as_real.item(), rel=1e-6)
    assert float(out["d_loss"]) != pytest.approx(as_fake.item(), rel=1e-3)
    assert gaan_d_loss(d_x, d_recon, d_fake).item() == pytest.approx(as_real.item())


def test_gaan_trains_encoder_and_generator_and_derives_lambda_w(tiny_arch, tiny_data):
    m = build_method(tiny_arch, _run("gaan"), _random_init(tiny_arch), 0.02)
    features = m.discriminator.trunk.out_features
    assert m.lambda_w == pytest.approx(math.sqrt(tiny_arch.latent_dim / features))
    encoder = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    out = m.train_step(_batches(tiny_data))
    assert any(not torch.equal(v, m.encoder.state_dict()[k]) for k, v in encoder.items())
    assert float(out["gp"]) >= 0 and float(out["w_reg"]) >= 0
    assert float(out["ae_loss"]) == pytest.approx(float(out["recon_loss"] + out["w_reg"]))
    assert all(p.requires_grad for p in m.discriminator.parameters())  # unfrozen after the step


def test_gaan_features_for_the_reconstruction_loss_are_taken_without_dropout(tiny_arch):
    from ugan.methods.gaan import without_dropout

    m = build_method(tiny_arch, _run("gaan"), _random_init(tiny_arch), 0.02)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    d = m.discriminator.train()
    assert not torch.equal(d.features(x), d.features(x))  # dropout 0.25 in training mode
    with without_dropout(d):
        assert torch.equal(d.features(x), d.features(x))
        assert all(bn.training for bn in d.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    assert all(m.training for m in d.modules())


def test_gaan_state_round_trip(tiny_arch, tiny_data, tmp_path):
    a = build_method(tiny_arch, _run("gaan"), _random_init(tiny_arch), 0.02)
    next_batch = _batches(tiny_data)
    a.train_step(next_batch)
    save_checkpoint(tmp_path / "state.pt", a.state_dict())  # as a resume does
    b = build_method(tiny_arch, _run("gaan"), _random_init(tiny_arch), 0.02)
    b.load_state_dict(load_checkpoint(tmp_path / "state.pt"))
    x = next_batch()
    torch.manual_seed(1)
    out_a = a.train_step(lambda: x)
    torch.manual_seed(1)
    out_b = b.train_step(lambda: x)
    assert {k: float(v) for k, v in out_a.items()} == {k: float(v) for k, v in out_b.items()}


# -- the training loop -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "init", "columns"),
    [
        ("gan", "vae", {"d_real"}),
        ("began", "random", {"k", "m_global", "lr", "l_real"}),
        ("rfgan", "random", {"d_real"}),
        ("rfgan", "vae", {"d_fake"}),
        ("gaan", "random", {"recon_loss", "w_reg", "d_recon"}),
        ("gaan", "vae", {"gp"}),
    ],
)
def test_train_gan_runs_every_method_and_writes_loadable_generators(
    method, init, columns, tiny_arch, tiny_data, dae_file, tmp_path
):
    run = _run(method, init=init)
    generator_init = _vae_init(tiny_arch) if init == "vae" else _random_init(tiny_arch)
    with StageRun("train_gan", {}, run_key=method, log_models=False) as tracker:
        summary = train_gan(
            method,
            run,
            tiny_arch,
            tiny_data,
            generator_init,
            tmp_path / "out",
            tracker,
            resume_root=tmp_path / "r",
        )
    layout = RunLayout(tmp_path / "out")
    assert summary["checkpoints"] == [2, 4] and summary["method"] == method
    header = layout.losses_csv.read_text().splitlines()[0].split(",")
    assert {"step", "d_loss", "g_loss"} | columns <= set(header)
    generator = load_generator(layout.checkpoint_path(4))
    assert type(generator) is type(build_method(tiny_arch, run, generator_init, 0.02).generator)
    assert generator.prior == get_method(method).build(tiny_arch, run, generator_init, 0.02).prior
    z = torch.rand(3, generator.cfg.latent_dim) * 2 - 1
    assert generator(z).shape == (3, 1, 28, 28)
    for name in columns:
        assert tracker.client.get_metric_history(tracker.run_id, name)


def test_an_interrupted_began_run_resumes_with_its_k_and_matches_an_uninterrupted_one(
    tiny_arch, tiny_data, tmp_path, monkeypatch
):
    run = _run("began", began={"lambda_k": 0.05, "lr_halve_patience": 2})

    def train(name: str) -> Path:
        with StageRun("train_gan", {}, run_key="b", log_models=False) as tracker:
            train_gan(
                "b",
                run,
                tiny_arch,
                tiny_data,
                _random_init(tiny_arch),
                tmp_path / name,
                tracker,
                resume_root=tmp_path / f"resume-{name}",
            )
        return RunLayout(tmp_path / name).losses_csv

    full = train("full")
    real_step, calls = BEGANMethod.train_step, []

    def interrupted_at_step_3(self, next_batch):
        calls.append(1)
        if len(calls) == 3:  # after the checkpoint (and resume state) of step 2
            raise KeyboardInterrupt
        return real_step(self, next_batch)

    monkeypatch.setattr(BEGANMethod, "train_step", interrupted_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train("cut")
    monkeypatch.setattr(BEGANMethod, "train_step", real_step)
    resumed = train("cut")  # resumes from step 2: k, M_global's average, lr, optimizers, RNG
    rows = [
        dict(
            zip(*(line.split(",") for line in (full.read_text().splitlines()[0], row)), strict=True)
        )
        for row in full.read_text().splitlines()[1:]
    ]
    assert float(rows[-1]["k"]) > float(rows[0]["k"]) > 0
    assert resumed.read_text() == full.read_text()


# -- the real pipeline -----------------------------------------------------------------------


@pytest.mark.slow
def test_dvc_pipeline_trains_method_runs_with_the_dae_stage(tmp_path):
    """`dvc repro` in a temp project (tiny params) of an unbalanced RFGAN run and an evaluated
    BEGAN run: pretrain_dae runs and feeds rfgan, the BEGAN generator is evaluated in another
    process. (evaluate/report of the rest are the same code as for method gan.)"""
    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_project import ROOT, TINY, _merge, _ran, _sh

    path = tmp_path / "project"
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    if (ROOT / "data/sources").is_dir():
        shutil.copytree(ROOT / "data/sources", path / "data/sources")
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    params["dae"] = {"steps": 8, "batch_size": 32, "log_every": 4, "sample_every": 4}
    params["gan"]["began"] = {"filters": 4}
    short = {"steps": 4, "checkpoint_every": 2}
    params["runs"] = {
        "began": {"init": "random", "method": "began", **short},
        "rfgan-unbalanced": {"init": "vae", "method": "rfgan", "loss": "dragan", **short},
    }
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(path / "src"),
        MLFLOW_TRACKING_URI=f"sqlite:///{path / 'mlflow.db'}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    env.pop("UGAN_PIPELINE_ID", None)
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "methods"],
    ):
        _sh(cmd, path, env)
    output = _sh(["dvc", "repro", "train_gan@rfgan-unbalanced", "evaluate@began"], path, env)
    assert {
        "pretrain_dae",
        "transfer",
        "train_gan@rfgan-unbalanced",
        "train_gan@began",
        "evaluate@began",
    } <= _ran(output)
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    assert "models/dae.pt" in {d["path"] for d in lock["train_gan@rfgan-unbalanced"]["deps"]}
    began_losses = (path / "runs/began/losses.csv").read_text().splitlines()
    assert {"m_global", "k"} <= set(began_losses[0].split(",")) and len(began_losses) == 5
    payload = load_checkpoint(path / "runs/began/checkpoints/generator_step_000004.pt")
    assert (payload["net"], payload["prior"]) == ("began", "uniform")
    metrics = json.loads((path / "evaluation/began/metrics.json").read_text())
    info = json.loads((path / "evaluation/began/info.json").read_text())
    assert info["method"] == "began" and math.isfinite(metrics["final"]["fid"])
    assert json.loads((path / "metrics/dae.json").read_text())["heldout_denoising_mse"] > 0


def test_the_catalog_and_the_method_table_name_the_same_methods():
    from ugan.config.schema import MethodName
    from ugan.methods.catalog import CATALOG

    assert set(CATALOG) == set(METHODS) == set(get_args(MethodName))
