"""RFGAN (its frozen DAE encoder) and GAAN (reconstructions as real, λ_w, the AE's training), on
tiny nets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from method_helpers import batches, random_init, tiny_run

from ugan.config.schema import DAEParams
from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import ResumeMismatchError
from ugan.core.paths import DAE_PATH
from ugan.methods.gaan import gaan_d_loss
from ugan.models.dae import DenoisingAE, load_frozen_encoder
from ugan.tracking.stage_run import StageRun
from ugan.training.dae import pretrain_dae
from ugan.training.gan import build_method

# -- RFGAN -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ns", "lsgan", "dragan", "wgan-gp"])
def test_rfgan_encoder_stays_frozen_while_the_discriminator_learns(
    loss, tiny_arch, tiny_data, dae_file
):
    m = build_method(tiny_arch, tiny_run("rfgan", loss=loss), random_init(tiny_arch), 0.02)
    d = m.discriminator
    frozen = {k: v.clone() for k, v in d.encoder.state_dict().items()}
    trunk = {k: v.clone() for k, v in d.trunk.state_dict().items()}
    next_batch = batches(tiny_data)
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
        tiny_arch, tiny_run("rfgan", rfgan={"g_updates": 3}), random_init(tiny_arch), 0.02
    )
    m.train_step(batches(tiny_data))
    first = next(m.generator.parameters())
    assert m.opt_g.state[first]["step"] == 3
    assert m.opt_d.state[next(m.discriminator.trunk.parameters())]["step"] == 1


def test_rfgan_resume_refuses_a_state_trained_with_another_encoder(tiny_arch, tiny_data, dae_file):
    a = build_method(tiny_arch, tiny_run("rfgan"), random_init(tiny_arch), 0.02)
    a.train_step(batches(tiny_data))
    state = a.state_dict()
    b = build_method(tiny_arch, tiny_run("rfgan"), random_init(tiny_arch), 0.02)
    b.load_state_dict(state)  # same DAE: fine
    assert all(torch.equal(v, b.generator.state_dict()[k]) for k, v in state["generator"].items())
    torch.manual_seed(99)  # pretrain_dae ran again: another encoder in models/dae.pt
    other = DenoisingAE(tiny_arch)
    save_checkpoint(DAE_PATH, {"encoder": other.encoder.state_dict(), "arch": tiny_arch.to_dict()})
    c = build_method(tiny_arch, tiny_run("rfgan"), random_init(tiny_arch), 0.02)
    with pytest.raises(ResumeMismatchError, match="another DAE encoder"):
        c.load_state_dict(state)


def test_rfgan_needs_a_dae_of_the_run_architecture(tiny_arch, tmp_path, monkeypatch):
    import dataclasses

    from ugan.core.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="models/dae.pt does not exist"):
        build_method(tiny_arch, tiny_run("rfgan"), random_init(tiny_arch), 0.02)
    wider = dataclasses.replace(tiny_arch, base_channels=8)
    save_checkpoint(
        DAE_PATH, {"encoder": DenoisingAE(wider).encoder.state_dict(), **{"arch": wider.to_dict()}}
    )
    with pytest.raises(ValueError, match="rerun the pretrain_dae stage"):
        build_method(tiny_arch, tiny_run("rfgan"), random_init(tiny_arch), 0.02)


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
    m = build_method(
        tiny_arch, tiny_run("gaan", gaan={"lambda_p": 0.0}), random_init(tiny_arch), 0.02
    )
    calls: dict[str, list] = {"D": [], "E": [], "G": []}
    for name, net in (("D", m.discriminator), ("E", m.encoder), ("G", m.generator)):
        net.register_forward_hook(
            lambda _, args, out, name=name: calls[name].append((args[0].detach(), out.detach()))
        )
    x, _ = batches(tiny_data)()
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
    m = build_method(tiny_arch, tiny_run("gaan"), random_init(tiny_arch), 0.02)
    features = m.discriminator.trunk.out_features
    assert m.lambda_w == pytest.approx(math.sqrt(tiny_arch.latent_dim / features))
    encoder = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    out = m.train_step(batches(tiny_data))
    assert any(not torch.equal(v, m.encoder.state_dict()[k]) for k, v in encoder.items())
    assert float(out["gp"]) >= 0 and float(out["w_reg"]) >= 0
    assert float(out["ae_loss"]) == pytest.approx(float(out["recon_loss"] + out["w_reg"]))
    assert all(p.requires_grad for p in m.discriminator.parameters())  # unfrozen after the step


def test_gaan_space_data_measures_an_images_reconstruction_in_pixels(tiny_arch, tiny_data):
    """`gaan.space: data` (an ablation): R = E_x ‖x − G(E(x))‖² over the image's pixels, as eq. 3
    is written, and λ_w = √(d / D) with D the pixels; the default keeps D's features (§4.2)."""
    features = build_method(tiny_arch, tiny_run("gaan"), random_init(tiny_arch), 0.02)
    assert features.feature_space
    run = tiny_run("gaan", gaan={"space": "data"})
    m = build_method(tiny_arch, run, random_init(tiny_arch), 0.02)
    assert not m.feature_space
    assert m.lambda_w == pytest.approx(math.sqrt(tiny_arch.latent_dim / (28 * 28)))
    x, y = batches(tiny_data)()
    m.generator.eval()  # batch norm on its running statistics: the same G(E(x)) twice
    m.encoder.eval()
    with torch.no_grad():
        expected = (x - m.generator(m.encoder(x))).pow(2).flatten(1).sum(1).mean()
    losses = m.train_step(lambda: (x, y))
    assert float(losses["recon_loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_gaan_features_for_the_reconstruction_loss_are_taken_without_dropout(tiny_arch):
    from ugan.methods.gaan import without_dropout

    m = build_method(tiny_arch, tiny_run("gaan"), random_init(tiny_arch), 0.02)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    d = m.discriminator.train()
    assert not torch.equal(d.features(x), d.features(x))  # dropout 0.25 in training mode
    with without_dropout(d):
        assert torch.equal(d.features(x), d.features(x))
        assert all(bn.training for bn in d.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    assert all(m.training for m in d.modules())


def test_gaan_state_round_trip(tiny_arch, tiny_data, tmp_path):
    a = build_method(tiny_arch, tiny_run("gaan"), random_init(tiny_arch), 0.02)
    next_batch = batches(tiny_data)
    a.train_step(next_batch)
    save_checkpoint(tmp_path / "state.pt", a.state_dict())  # as a resume does
    b = build_method(tiny_arch, tiny_run("gaan"), random_init(tiny_arch), 0.02)
    b.load_state_dict(load_checkpoint(tmp_path / "state.pt"))
    x = next_batch()
    torch.manual_seed(1)
    out_a = a.train_step(lambda: x)
    torch.manual_seed(1)
    out_b = b.train_step(lambda: x)
    assert {k: float(v) for k, v in out_a.items()} == {k: float(v) for k, v in out_b.items()}


def test_gaan_authors_code_objective_weighs_d_and_takes_g_from_d_means(tiny_arch, tiny_data):
    """`gaan.objective: authors-code` (tntrung/gan `gaan_image`): D's real / reconstructed terms
    0.95 / 0.05, G's loss |E σ(D(x)) − E σ(D(G(z)))| read from D after its update; the paper's
    objective never runs D on x in G's step (a batch-norm D would update its statistics)."""
    counts = {}
    for objective in ("paper", "authors-code"):
        gaan = {"lambda_p": 0.0, "objective": objective}
        m = build_method(tiny_arch, tiny_run("gaan", gaan=gaan), random_init(tiny_arch), 0.02)
        calls: list = []
        m.discriminator.register_forward_hook(
            lambda _, args, out, calls=calls: calls.append((args[0].detach(), out.detach()))
        )
        x, _ = batches(tiny_data)()
        labels = torch.zeros(len(x), dtype=torch.long)
        out = m.train_step(lambda x=x, labels=labels: (x, labels))
        counts[objective] = len(calls)
        if objective == "paper":
            continue
        (_, d_x), (_, d_recon), (_, d_fake) = calls[:3]  # step 2: x, G(E(x)), G(z)
        bce = F.binary_cross_entropy_with_logits
        weighted = (
            0.95 * bce(d_x, torch.ones_like(d_x))
            + 0.05 * bce(d_recon, torch.ones_like(d_recon))
            + bce(d_fake, torch.zeros_like(d_fake))
        )
        assert float(out["d_loss"]) == pytest.approx(weighted.item(), rel=1e-6)
        (x_now, d_x_now), (_, d_g) = calls[-2:]  # step 3: D(x) after D's update, D(G(z))
        assert torch.equal(x_now, x) and not torch.equal(d_x_now, d_x)
        distance = (torch.sigmoid(d_x_now).mean() - torch.sigmoid(d_g).mean()).abs()
        assert float(out["g_loss"]) == pytest.approx(distance.item(), rel=1e-6)
    assert counts["authors-code"] == counts["paper"] + 1


@pytest.mark.parametrize("batches_mode, draws", [("one", 1), ("per-update", 3)])
def test_gaan_per_update_batches_give_each_update_its_own_minibatch(
    batches_mode, draws, tiny_arch, tiny_data
):
    """`gaan.batches: per-update` (both authors' codes): the AE, D and G updates each draw their own
    x; `one` (Algorithm 1) trains all three on one minibatch. A bug that reuses step 1's x in D's
    step, or draws once in per-update mode, fails here."""
    gaan = {"objective": "authors-code", "batches": batches_mode}
    m = build_method(tiny_arch, tiny_run("gaan", gaan=gaan), random_init(tiny_arch), 0.02)
    draw = batches(tiny_data)
    drawn: list = []
    seen: list = []
    m.discriminator.register_forward_hook(lambda _, args, out: seen.append(args[0].detach()))

    def next_batch():
        drawn.append(draw())
        return drawn[-1]

    m.train_step(next_batch)
    assert len(drawn) == draws
    first, d_step, g_step = drawn[0][0], drawn[min(1, draws - 1)][0], drawn[-1][0]
    assert torch.equal(seen[0], d_step)  # step 2: D(x) (step 1 reads D's trunk only)
    assert torch.equal(seen[-2], g_step)  # step 3: D(x) that G's loss reads
    if draws == 3:
        assert not torch.equal(d_step, first) and not torch.equal(g_step, d_step)


def test_gaan_authors_mnist_code_weighs_real_and_reconstructed_alike(tiny_arch, tiny_data):
    """`authors-mnist-code` (tntrung/gan `gaan_mnist`): D's loss (BCE real + BCE recon) · 0.5 +
    BCE fake, the rest as `authors-code`."""
    gaan = {"lambda_p": 0.0, "objective": "authors-mnist-code"}
    m = build_method(tiny_arch, tiny_run("gaan", gaan=gaan), random_init(tiny_arch), 0.02)
    logits: list = []
    m.discriminator.register_forward_hook(lambda _, args, out: logits.append(out.detach()))
    x, labels = batches(tiny_data)()
    out = m.train_step(lambda: (x, labels))
    d_x, d_recon, d_fake = logits[:3]  # step 2: x, G(E(x)), G(z)
    bce = F.binary_cross_entropy_with_logits
    half = 0.5 * (bce(d_x, torch.ones_like(d_x)) + bce(d_recon, torch.ones_like(d_recon)))
    assert float(out["d_loss"]) == pytest.approx((half + bce(d_fake, 0 * d_fake)).item(), rel=1e-6)


def test_the_gradient_penalty_on_the_rms_divides_the_norm_by_the_root_of_the_dimension():
    from ugan.losses import wgan_gp_penalty

    w = torch.full((1, 3, 4, 4), 0.5)  # a linear critic: ∇ = w everywhere, ‖w‖ = 0.5·√48
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    norm = 0.5 * math.sqrt(48)
    assert wgan_gp_penalty(critic, real, fake).item() == pytest.approx((norm - 1) ** 2)
    assert wgan_gp_penalty(critic, real, fake, rms=True).item() == pytest.approx((0.5 - 1) ** 2)


def test_an_unknown_gaan_objective_is_named():
    from ugan.config.load import parse_params
    from ugan.core.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"gaan.objective.*'paper', 'authors-code' or 'authors-mnist-code'"
    ):
        parse_params({"gan": {"method": "gaan", "gaan": {"objective": "code"}}})
