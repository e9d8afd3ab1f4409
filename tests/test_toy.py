"""2-D Gaussian mixtures, the MLP nets of GAAN Table 1, and scatter plots of 2-D samples."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from ugan.data.toy import (
    EXTENT_SIGMAS,
    MIXTURES,
    grid25,
    make_mixture,
    ring8,
    true_registered_fraction,
)
from ugan.modebench.scatter import save_scatter
from ugan.nets.mlp import (
    OUTPUTS,
    MLPConfig,
    MLPDiscriminator,
    MLPEncoder,
    MLPGaussianEncoder,
    MLPGenerator,
)

# -- mixtures ---------------------------------------------------------------------------------


def test_ring8_has_eight_equally_spaced_means_on_a_radius_2_circle():
    ring = ring8()
    assert ring.num_modes == 8 and ring.sigma == 0.1  # RFGAN §4.1
    assert np.allclose(np.linalg.norm(ring.centres, axis=1), 2.0)
    angles = np.sort(np.mod(np.arctan2(ring.centres[:, 1], ring.centres[:, 0]), 2 * np.pi))
    assert np.allclose(np.diff(angles), np.pi / 4)


def test_grid25_means_are_the_5x5_grid_with_spacing_2():
    grid = grid25()
    assert grid.num_modes == 25 and grid.sigma == 0.05
    expected = {(float(x), float(y)) for x, y in itertools.product(range(-4, 5, 2), repeat=2)}
    assert {tuple(c) for c in grid.centres.tolist()} == expected
    assert grid.register_radius == pytest.approx(0.15)  # 3 σ


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_samples_are_seeded_and_follow_the_mixture(name):
    mixture = make_mixture(name)
    points, modes = mixture.sample_with_modes(40_000, seed=3)
    assert points.dtype == np.float32 and points.shape == (40_000, 2)
    assert np.array_equal(points, mixture.sample(40_000, seed=3))
    assert not np.array_equal(points, mixture.sample(40_000, seed=4))
    # equal weights: every mode within 5 binomial standard deviations of N / K
    counts = np.bincount(modes, minlength=mixture.num_modes)
    expected = 40_000 / mixture.num_modes
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)
    # isotropic σ around the mode each point came from
    offsets = points - mixture.centres[modes]
    assert np.allclose(offsets.std(axis=0), mixture.sigma, rtol=0.03)
    assert np.allclose(offsets.mean(axis=0), 0.0, atol=0.03 * mixture.sigma)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_unit_box_maps_true_samples_into_0_1_and_back(name):
    mixture = make_mixture(name)
    points = mixture.sample(10_000, seed=0)
    unit = mixture.to_unit(points)
    assert unit.min() > 0.0 and unit.max() < 1.0
    assert np.allclose(mixture.from_unit(unit), points, atol=1e-5)
    assert mixture.extent == pytest.approx(
        np.abs(mixture.centres).max() + EXTENT_SIGMAS * mixture.sigma
    )


def test_overrides_and_errors_name_the_valid_choices():
    assert make_mixture("ring8", sigma=0.02, radius=1.0).sigma == 0.02
    assert np.allclose(np.linalg.norm(make_mixture("ring8", radius=1.0).centres, axis=1), 1.0)
    assert make_mixture("grid25", spacing=1.0).centres.max() == 2.0
    with pytest.raises(ValueError, match=r"'ring9'.*\['grid25', 'ring8'\]"):
        make_mixture("ring9")
    with pytest.raises(ValueError, match="radius"):
        make_mixture("grid25", radius=3.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ring8(sigma=0.0)


def test_true_registered_fraction_is_the_rayleigh_cdf():
    assert true_registered_fraction(3.0) == pytest.approx(0.988891, abs=1e-6)
    radius = np.linalg.norm(np.random.default_rng(0).standard_normal((200_000, 2)), axis=1)
    assert (radius <= 3.0).mean() == pytest.approx(true_registered_fraction(), abs=1e-3)


# -- MLP nets (GAAN Table 1) ------------------------------------------------------------------


def _linear_shapes(net: torch.nn.Module) -> list[tuple[int, int]]:
    return [
        (m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)
    ]


def test_mlp_layer_sizes_are_those_of_gaan_table_1():
    cfg = MLPConfig()
    hidden = [(128, 128), (128, 128)]
    assert _linear_shapes(MLPGenerator(cfg)) == [(2, 128), *hidden, (128, 2)]
    assert _linear_shapes(MLPEncoder(cfg)) == [(2, 128), *hidden, (128, 2)]
    assert _linear_shapes(MLPDiscriminator(cfg)) == [(2, 128), *hidden, (128, 1)]
    relus = [m for m in MLPGenerator(cfg).modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == 3


def test_mlp_shapes_and_output_ranges():
    cfg = MLPConfig(hidden_dim=16)
    z = torch.rand(5, 2) * 2 - 1
    g, d = MLPGenerator(cfg), MLPDiscriminator(cfg)
    x = g(z)
    assert x.shape == (5, 2) and ((0 < x) & (x < 1)).all()  # sigmoid output (paper)
    assert torch.allclose(x, torch.sigmoid(g.logits(z)))
    assert d(x).shape == (5,) and d.features(x).shape == (5, 16)
    assert MLPEncoder(cfg)(x).shape == (5, 2)
    mu, logvar = MLPGaussianEncoder(cfg)(x)
    assert mu.shape == logvar.shape == (5, 2)
    free = MLPGenerator(MLPConfig(hidden_dim=16, output="identity"))
    assert torch.equal(free(z), free.logits(z))


def test_mlp_weights_start_he_normal_with_zero_bias():
    torch.manual_seed(0)
    d = MLPDiscriminator(MLPConfig(hidden_dim=512))
    hidden = d.trunk[2]  # second Linear: fan_in 512
    assert hidden.weight.std().item() == pytest.approx((2 / 512) ** 0.5, rel=0.02)
    assert torch.count_nonzero(hidden.bias) == 0


def test_orthogonal_init_is_unrolled_gans_gain_0_8_on_every_net():
    torch.manual_seed(0)
    cfg = MLPConfig(hidden_dim=64, latent_dim=256, init="orthogonal")
    for net in (MLPGenerator(cfg), MLPDiscriminator(cfg), MLPEncoder(cfg), MLPGaussianEncoder(cfg)):
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight  # (out, in): orthogonal rows or columns, whichever are fewer
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                assert torch.allclose(gram, 0.64 * torch.eye(len(gram)), atol=1e-4)
                assert torch.count_nonzero(m.bias) == 0


def test_input_scale_scales_the_data_side_nets_and_never_g():
    torch.manual_seed(0)
    plain = MLPConfig(hidden_dim=16)
    quarter = MLPConfig(hidden_dim=16, input_scale=0.25)
    x, z = torch.randn(8, 2) * 2, torch.rand(8, 2)

    def out(net, inputs):  # the VAE encoder returns (mu, logvar): compare mu
        result = net(inputs)
        return result[0] if isinstance(result, tuple) else result

    for make in (MLPDiscriminator, MLPEncoder, MLPGaussianEncoder):
        a, b = make(plain), make(quarter)
        b.load_state_dict(a.state_dict())
        assert torch.equal(out(b, x), out(a, x / 4)), make.__name__
        assert not torch.allclose(out(b, x), out(a, x)), make.__name__
    g_plain, g_quarter = MLPGenerator(plain), MLPGenerator(quarter)
    g_quarter.load_state_dict(g_plain.state_dict())
    assert torch.equal(g_plain(z), g_quarter(z))


def test_the_default_init_draws_what_it_drew_before_init_became_a_choice():
    # He-normal from the same seed and stream: scores recorded before `init` existed still stand
    cfg = MLPConfig(hidden_dim=32, hidden_layers=2)
    torch.manual_seed(3)
    d = MLPDiscriminator(cfg)
    torch.manual_seed(3)  # the same layers built in the same order, then the old loop
    layers = [torch.nn.Linear(2, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 1)]
    for layer in layers:
        torch.nn.init.normal_(layer.weight, 0.0, (2 / layer.in_features) ** 0.5)
    ours = [m.weight for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.equal(a, b.weight) for a, b in zip(ours, layers, strict=True))


def test_mlp_gan_step_reaches_every_parameter():
    cfg = MLPConfig(hidden_dim=8)
    g, d = MLPGenerator(cfg), MLPDiscriminator(cfg)
    real = torch.rand(16, 2)
    fake = g(torch.rand(16, 2) * 2 - 1)
    loss = (
        torch.nn.functional.softplus(-d(real)).mean() + torch.nn.functional.softplus(d(fake)).mean()
    )
    loss.backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_mlp_config_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match=r"MLPConfig.output.*'identity'"):
        MLPConfig(output="relu")
    with pytest.raises(ValueError, match="MLPConfig.hidden_layers"):
        MLPConfig(hidden_layers=0)
    with pytest.raises(ValueError, match=r"MLPConfig.init.*'orthogonal'"):
        MLPConfig(init="xavier")
    with pytest.raises(ValueError, match="MLPConfig.input_scale"):
        MLPConfig(input_scale=0.0)
    assert set(OUTPUTS) == {"identity", "sigmoid", "tanh"}
    assert MLPConfig(latent_dim=3).to_dict()["latent_dim"] == 3


# -- scatter plots ----------------------------------------------------------------------------


def test_scatter_png_is_written_atomically_and_shows_the_points(tmp_path):
    mixture = grid25()
    on_modes = save_scatter(mixture.sample(2000, seed=0), mixture, tmp_path / "a" / "true.png")
    collapsed = save_scatter(np.zeros((2000, 2)), mixture, tmp_path / "a" / "collapsed.png")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["collapsed.png", "true.png"]
    with Image.open(on_modes) as a, Image.open(collapsed) as b:
        assert a.format == "PNG" and a.size == (500, 500)
        pixels_a, pixels_b = np.asarray(a.convert("L")), np.asarray(b.convert("L"))
    # the true samples paint many more non-white pixels than 2,000 points on one spot
    assert (pixels_a < 250).sum() > (pixels_b < 250).sum() + 1000


def test_scatter_rejects_points_that_are_not_2d(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        save_scatter(np.zeros((10, 3)), ring8(), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
