"""Unrolled GAN's low-capacity Stacked MNIST nets (`ugan.nets.unrolled`, GAAN Table 3's K/4 and
K/2 critics): their shapes as the paper's, every method of the family on them, their generator
files, and the `nets` param of a Stacked MNIST benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ugan.config.load import parse_params
from ugan.config.schema import ModelParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import ConfigError
from ugan.core.paths import RunLayout
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData, save_prepared
from ugan.modebench.benchmarks import Inputs, get_benchmark
from ugan.modebench.runner import Context, run_benchmark
from ugan.nets.arch import CRITIC_WIDTHS, UnrolledConfig
from ugan.nets.classifier import Classifier
from ugan.nets.family import family_of
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.nets.unrolled import UnrolledDiscriminator, UnrolledGenerator


def _conv_widths(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(("critic", "widths"), [("K/4", [2, 4, 8]), ("K/2", [4, 8, 16])])
def test_the_crippled_critics_have_the_papers_filters(critic, widths):
    cfg = UnrolledConfig(critic_width=CRITIC_WIDTHS[critic])
    discriminator = UnrolledDiscriminator(cfg)
    assert _conv_widths(discriminator) == widths
    assert discriminator.trunk.out_features == widths[-1] * 4 * 4  # 28 → 14 → 7 → 4
    slopes = {m.negative_slope for m in discriminator.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.3}
    assert discriminator(torch.randn(5, 3, 28, 28)).shape == (5,)
    layer_normed = UnrolledDiscriminator(cfg, norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer_normed.modules())
    with torch.no_grad():  # layer norm: a sample's logit does not depend on the others
        x = torch.randn(6, 3, 28, 28)
        torch.testing.assert_close(layer_normed(x)[:3], layer_normed(x[:3]))


def test_the_low_capacity_generator_draws_28_px_rgb_from_256_dims():
    cfg = UnrolledConfig()
    generator = UnrolledGenerator(cfg)
    images = generator(torch.randn(4, 256))
    assert images.shape == (4, 3, 28, 28)
    assert images.abs().max() <= 1
    ups = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in ups] == [32, 16, 8]
    # an order of magnitude below the paper's DCGAN generator at 64 filters
    assert sum(p.numel() for p in generator.parameters()) < 300_000


def test_every_net_of_the_family_runs_and_starts_at_the_dcgan_init():
    cfg = UnrolledConfig()
    nets = family_of(cfg)
    assert nets.name == "unrolled" and nets.gaan_feature_space
    x = torch.randn(3, 3, 28, 28)
    mu, logvar = nets.vae_encoder(cfg)(x)
    assert mu.shape == logvar.shape == (3, 256)
    assert nets.latent_encoder(cfg)(x).shape == (3, 256)
    assert nets.trunk(cfg)(x).shape == (3, 128)
    generator = nets.generator(cfg)
    nets.init(generator, 0.02, cfg)
    weights = torch.cat([generator.project.weight.flatten(), generator.body[-1].weight.flatten()])
    assert abs(weights.std().item() - 0.02) < 0.002
    assert generator.body[-1].bias.abs().max() == 0


def test_unrolled_init_xavier_is_the_gaan_authors_stacked_mnist_init():
    """`modes.<entry>.unrolled.init: xavier` (tntrung/msgan's Stacked MNIST nets): every conv /
    linear weight Xavier-uniform (bound √(6 / (fan_in + fan_out))), biases zero, norm gains 1;
    the default stays N(0, 0.02). A bad value is named with the allowed ones."""
    entry = _stacked_entry("unrolled-k4", {"w": {"init": "random"}})
    modes = parse_params({"modes": {"g": {**entry, "unrolled": {"init": "xavier"}}}}).modes["g"]
    cfg = get_benchmark("stacked-mnist").arch(modes, ModelParams())
    assert cfg.init == "xavier" and cfg.to_dict()["init"] == "xavier"
    nets = family_of(cfg)
    critic = nets.discriminator(cfg, norm="layer")
    nets.init(critic, 0.02, cfg)
    conv = critic.trunk.body[0]  # 3 → 2 filters, 3×3
    bound = math.sqrt(6 / (3 * 9 + 2 * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.8 * bound
    assert conv.bias.abs().max() == 0
    assert all(
        torch.equal(m.weight, torch.ones_like(m.weight))
        for m in critic.modules()
        if isinstance(m, nn.GroupNorm)
    )
    default = parse_params({"modes": {"g": entry}}).modes["g"]
    assert get_benchmark("stacked-mnist").arch(default, ModelParams()).init == "normal"
    with pytest.raises(ConfigError, match=r"unrolled.init.*'normal' or 'xavier'"):
        parse_params({"modes": {"g": {**entry, "unrolled": {"init": "he"}}}})


def test_a_generator_file_rebuilds_the_unrolled_generator(tmp_path):
    generator = UnrolledGenerator(UnrolledConfig(critic_width=4)).eval()
    save_checkpoint(tmp_path / "g.pt", generator_payload(generator, prior="uniform"))
    loaded = load_generator(tmp_path / "g.pt").eval()
    assert type(loaded) is UnrolledGenerator and loaded.cfg == generator.cfg
    assert loaded.prior == "uniform"
    z = torch.randn(2, 256)
    torch.testing.assert_close(loaded(z), generator(z))


def _stacked_entry(nets: str, variants: dict) -> dict:
    return {
        "benchmark": "stacked-mnist",
        "nets": nets,
        "seeds": [0],
        "steps": 2,
        "batch_size": 8,
        "pretrain_steps": 2,
        "num_samples": 30,
        "train_images": 48,
        "workers": 1,
        "variants": variants,
    }


def test_every_stacked_mnist_method_trains_on_the_k4_nets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(100, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(100) < 70, TRAIN, HELDOUT).astype(np.uint8)
    save_prepared(
        tmp_path / "dataset.npz",
        PreparedData(images, np.arange(100) % 10, split, {"source": "t", "num_classes": 10}),
    )
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "classifier.pt", Classifier(channels=1, num_classes=10).to_payload())
    variants = {
        "gan": {"init": "random"},
        "gan-unbalanced": {"init": "vae"},
        "wgan-gp": {"init": "random", "loss": "wgan-gp", "n_critic": 2},
        "rfgan": {"init": "random", "method": "rfgan"},
        "gaan": {"init": "random", "method": "gaan"},
    }
    entry = parse_params({"modes": {"k4": _stacked_entry("unrolled-k4", variants)}}).modes["k4"]
    assert get_benchmark("stacked-mnist").arch(entry, ModelParams()) == UnrolledConfig()
    inputs = Inputs(tmp_path / "dataset.npz", tmp_path / "classifier.pt")
    out = tmp_path / "out"
    summary = run_benchmark(Context("k4", entry, ModelParams(), inputs, out))
    for variant in variants:
        found = summary["variants"][variant]
        assert 1 <= found["metrics"]["modes_covered"]["mean"] <= 30
        assert 0 <= found["metrics"]["kl_uniform"]["mean"] <= math.log(1000)
    # Table 3's K/4 column beside ours (the default conv nets keep K/2's)
    assert summary["variants"]["gan"]["paper"]["modes_covered"] == "30.6 ± 20.7"
    assert summary["variants"]["gaan"]["paper"]["kl_uniform"] == "1.04 ± 0.29"
    assert "K/4 discriminator" in summary["paper_source"]
    default = parse_params({"modes": {"d": {"benchmark": "stacked-mnist"}}}).modes["d"]
    assert "K/2" in get_benchmark("stacked-mnist").bound(default).paper_source
    finals = [RunLayout(out / "cells" / f"{v}-s0").checkpoint_path(2) for v in variants]
    assert {type(load_generator(path)) for path in finals} == {UnrolledGenerator}


def test_the_nets_param_names_what_is_wrong():
    with pytest.raises(ConfigError, match="nets: 'unrolled-k4' are Stacked MNIST nets; grid25"):
        parse_params({"modes": {"g": {"benchmark": "grid25", "nets": "unrolled-k4"}}})
    with pytest.raises(ConfigError, match="variants.b: BEGAN's discriminator .*'unrolled-k2'"):
        variants = {"b": {"init": "random", "method": "began"}}
        parse_params({"modes": {"g": _stacked_entry("unrolled-k2", variants)}})
    with pytest.raises(ConfigError, match=r"modes.g.nets.*'dcgan', 'unrolled-k4' or 'unrolled-k2'"):
        parse_params({"modes": {"g": {"benchmark": "stacked-mnist", "nets": "k4"}}})
