"""Mode-coverage benchmarks (stage `modes`): the methods on the MLP family, a whole tiny
benchmark with cell reuse, Stacked MNIST scored by a digit classifier, and their params."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
import yaml

from ugan.config.load import parse_params
from ugan.config.profiles import apply_profile, load_profile
from ugan.config.schema import BenchmarkName, GANParams, ModeBenchmarkParams, ModelParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import ConfigError
from ugan.core.paths import RunLayout
from ugan.data.batches import InfiniteBatches
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData, save_prepared
from ugan.methods.table import get_method
from ugan.modebench.benchmarks import BENCHMARKS, Inputs, get_benchmark
from ugan.modebench.runner import Context, run_benchmark
from ugan.modebench.tables import markdown
from ugan.nets.classifier import Classifier
from ugan.nets.generator_file import load_generator
from ugan.nets.mlp import MLPDiscriminator, MLPGenerator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_a_project(tmp_path, monkeypatch):
    """Each test in its own cwd: cells keep resume states under `.ugan/resume/modes/<name>/`,
    and another module's xdist worker may train a benchmark of the same name at once."""
    monkeypatch.chdir(tmp_path)


def test_the_benchmark_names_of_params_are_the_registry():
    assert set(get_args(BenchmarkName)) == set(BENCHMARKS)


def _ring_batches(batch: int = 32) -> tuple:
    bench = get_benchmark("ring8")
    data = bench.data(ModeBenchmarkParams(benchmark="ring8"), Inputs())
    return bench, InfiniteBatches(*data.train, batch, seed=0)


@pytest.mark.parametrize("method", ["gan", "gaan"])
def test_a_method_trains_on_2d_points_with_the_mlp_family(method):
    bench, batches = _ring_batches()
    entry = ModeBenchmarkParams(benchmark="ring8", variants={"v": {"init": "random"}})
    arch = bench.arch(entry, ModelParams())
    run = entry.cell("v", 0).model_copy(
        update={"gan": entry.cell("v", 0).gan.model_copy(update={"method": method})}
    )
    recipe = {"arch": arch.to_dict(), "init_std": 0.02}
    m = get_method(method).build(arch, run, recipe, 0.02)
    before = [p.detach().clone() for p in m.discriminator.parameters()]
    g_before = [p.detach().clone() for p in m.generator.parameters()]
    losses = m.train_step(batches.next)
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert any(
        not torch.equal(a, b) for a, b in zip(before, m.discriminator.parameters(), strict=True)
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(g_before, m.generator.parameters(), strict=True)
    )
    if method == "gaan":  # 2-D: W compares data-space means, λ_w = √(d / D) = √(2 / 2)
        assert m.feature_space is False and m.lambda_w == pytest.approx(1.0)


def _profile_modes() -> dict[str, ModeBenchmarkParams]:
    """The `modes:` of profiles/modes.yaml applied to the shipped params.yaml."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    _, params = apply_profile(base, load_profile("modes", ROOT / "profiles"))
    return params.modes


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_wgan_gp_on_the_mixtures_uses_the_toy_settings_of_its_authors(name):
    """Gulrajani et al.'s toy code: Adam lr 1e-4, β (0.5, 0.9), 5 critic steps, λ = 0.1."""
    gan = _profile_modes()[name].cell("wgan-gp", 0).gan
    assert (gan.loss, gan.n_critic, gan.gp_weight) == ("wgan-gp", 5, 0.1)
    assert (gan.optim.lr, gan.optim.beta1, gan.optim.beta2) == (1e-4, 0.5, 0.9)


def test_gaan_reconstruction_on_2d_points_is_in_the_data_space():
    """GAAN §4.1 / eq. 3: on 2-D points R = E_x ‖x − G(E(x))‖², not a distance between D's
    features (those are for images only, §4.2)."""
    bench, batches = _ring_batches()
    entry = ModeBenchmarkParams(benchmark="ring8", variants={"v": {"init": "random"}})
    arch = bench.arch(entry, ModelParams())
    run = entry.cell("v", 0).model_copy(
        update={"gan": entry.cell("v", 0).gan.model_copy(update={"method": "gaan"})}
    )
    m = get_method("gaan").build(arch, run, {"arch": arch.to_dict(), "init_std": 0.02}, 0.02)
    x, y = batches.next()
    with torch.no_grad():  # before the step's AE update
        expected = (x - m.generator(m.encoder(x))).pow(2).sum(1).mean()
    losses = m.train_step(lambda: (x, y))
    assert float(losses["recon_loss"]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_gaan_on_the_mixtures_uses_the_toy_settings_of_gaan_section_4_1(name):
    """λ_r = λ_p = 0.1, λ_w = 1 (GAAN §4.1), in the profile and in the schema's defaults."""
    toy = {"lambda_r": 0.1, "lambda_p": 0.1, "lambda_w": 1.0}
    entries = [_profile_modes()[name], ModeBenchmarkParams(benchmark=name)]
    for entry in entries:
        gaan = entry.cell("gaan", 0).gan.gaan
        assert {k: getattr(gaan, k) for k in toy} == toy
    assert GANParams().gaan.lambda_r == 1.0  # images keep §4.2's λ_r = λ_p = 1


def test_no_paper_tv_is_placed_beside_ours():
    """GAAN Table 2's TV columns are DAN's definitions (not stated; GAN's 1.00 is out of reach of
    our TV to uniform, at most 1 − 1/25): the table shows none of them beside ours, and says so."""
    bench = BENCHMARKS["grid25"]
    assert bench.paper and all("mode_tv" not in f.values for f in bench.paper.values())
    assert all("registered_points" in f.values for f in bench.paper.values())
    assert "not comparable" in bench.paper_source


def _ring_entry(**overrides) -> ModeBenchmarkParams:
    raw = {
        "benchmark": "ring8",
        "seeds": [0, 1],
        "steps": 10,
        "batch_size": 32,
        "pretrain_steps": 5,
        "num_samples": 100,
        "workers": 1,  # one after another in this process (tests/test_mode_pool.py: workers)
        "variants": {
            "gan": {"init": "random"},
            "rfgan": {"init": "random", "method": "rfgan"},
        },
        **overrides,
    }
    return parse_params({"modes": {"ring": raw}}).modes["ring"]


def test_a_benchmark_aggregates_seeds_and_reuses_only_unchanged_cells(tmp_path, capsys):
    out = tmp_path / "modes" / "ring"
    ctx = Context("ring", _ring_entry(), ModelParams(), Inputs(), out)
    summary = run_benchmark(ctx)
    stat = summary["variants"]["rfgan"]["metrics"]["registered_points"]
    assert stat["n"] == 2 and len(stat["values"]) == 2
    assert stat["mean"] == pytest.approx(np.mean(stat["values"]))
    assert summary["reference"]["modes_covered"] == 8
    results = sorted(out.glob("cells/*/result.json"))
    assert [p.parent.name for p in results] == ["gan-s0", "gan-s1", "rfgan-s0", "rfgan-s1"]
    written = {p: p.stat().st_mtime_ns for p in results}
    assert (out / "cells/gan-s0/final.png").is_file()
    daes = [torch.load(out / f"dae-s{s}.pt", weights_only=True) for s in (0, 1)]
    first = next(iter(daes[0]["encoder"]))  # each seed's own DAE, seeded by it
    assert not torch.equal(daes[0]["encoder"][first], daes[1]["encoder"][first])

    capsys.readouterr()
    again = run_benchmark(ctx)  # nothing changed: every cell and the DAE are reused
    assert "rfgan-s1 unchanged, reused" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in results} == written
    assert again["variants"] == summary["variants"]

    longer = Context("ring", _ring_entry(steps=12), ModelParams(), Inputs(), out)
    run_benchmark(longer)  # another step count: every cell trains again
    assert all(p.stat().st_mtime_ns != written[p] for p in results)

    dae = (out / "dae-s0.pt").stat().st_mtime_ns
    capsys.readouterr()
    # other nets of the same shapes (D's input scaled): the DAE, D's encoder, trains again
    scaled = Context("ring", _ring_entry(mlp={"input_scale": 0.25}), ModelParams(), Inputs(), out)
    run_benchmark(scaled)
    assert "dae unchanged" not in capsys.readouterr().out
    assert (out / "dae-s0.pt").stat().st_mtime_ns != dae
    assert "| rfgan" in markdown({"ring": summary})


def test_each_seed_starts_from_its_own_vae(tmp_path):
    """Unbalanced cells of seeds 0 and 1 start from two VAEs, each seeded by its seed, so the
    VAE's variance is inside the interval over seeds."""
    entry = _ring_entry(variants={"gan-unbalanced": {"init": "vae"}})
    out = tmp_path / "modes" / "ring"
    run_benchmark(Context("ring", entry, ModelParams(), Inputs(), out))
    inits = [torch.load(out / f"init_vae-s{s}.pt", weights_only=True) for s in (0, 1)]
    states = [init["state_dict"] for init in inits]
    assert states[0].keys() == states[1].keys()
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])
    markers = [json.loads((out / f"vae-s{s}.json").read_text()) for s in (0, 1)]
    assert [m["part"] for m in markers] == ["vae-s0", "vae-s1"]


def test_stacked_mnist_is_scored_by_the_digit_classifier_per_channel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(120, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(120) < 80, TRAIN, HELDOUT).astype(np.uint8)
    data = PreparedData(images, np.arange(120) % 10, split, {"source": "t", "num_classes": 10})
    save_prepared(tmp_path / "dataset.npz", data)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "classifier.pt", Classifier(channels=1, num_classes=10).to_payload())
    entry = parse_params(
        {
            "modes": {
                "stacked": {
                    "benchmark": "stacked-mnist",
                    "seeds": [0],
                    "steps": 3,
                    "batch_size": 16,
                    "pretrain_steps": 2,
                    "num_samples": 40,
                    "train_images": 64,
                    "base_channels": 4,
                    "workers": 1,
                    "variants": {
                        "began": {"init": "random", "method": "began"},
                        "gan-unbalanced": {"init": "vae"},
                    },
                }
            }
        }
    ).modes["stacked"]
    inputs = Inputs(tmp_path / "dataset.npz", tmp_path / "classifier.pt")
    ctx = Context("stacked", entry, ModelParams(latent_dim=8), inputs, tmp_path / "out")
    summary = run_benchmark(ctx)
    for variant in ("began", "gan-unbalanced"):
        metrics = summary["variants"][variant]["metrics"]
        assert 1 <= metrics["modes_covered"]["mean"] <= 40
        assert 0 <= metrics["kl_uniform"]["mean"] <= math.log(1000)
        assert 0 < metrics["msssim"]["mean"] < 1
    assert summary["variants"]["gan-unbalanced"]["init"] == "vae"
    assert 1 <= summary["reference"]["modes_covered"] <= 40
    # beside the modes, how many images the classifier read with every digit at p ≥ 0.9
    assert 0 <= summary["reference"]["confident"] <= 1
    path = tmp_path / "out/cells/began-s0/result.json"
    cell = json.loads(path.read_text())
    assert all(0 <= t["scores"]["confident"] <= 1 for t in cell["trajectory"])
    # a cell scored before `confident` existed is reused as it is: its value is missing, not 0
    for scores in [cell["scores"], *(t["scores"] for t in cell["trajectory"])]:
        del scores["confident"]
    path.write_text(json.dumps(cell))
    again = run_benchmark(ctx)
    assert again["variants"]["began"]["metrics"]["confident"]["values"] == [None]
    assert again["variants"]["gan-unbalanced"]["metrics"]["confident"]["values"][0] is not None
    lines = [line for line in markdown({"stacked": again}).splitlines() if line.startswith("|")]
    began = next(line for line in lines if line.split("|")[1].strip() == "began")
    assert began.rstrip("| ").endswith("–")  # the overview's confident column


def test_benchmark_params_name_what_is_wrong():
    with pytest.raises(ConfigError, match="variants.b: BEGAN.*stacked-mnist"):
        parse_params(
            {
                "modes": {
                    "g": {
                        "benchmark": "grid25",
                        "variants": {"b": {"init": "random", "method": "began"}},
                    }
                }
            }
        )
    with pytest.raises(ConfigError, match=r"modes.g.benchmark.*'ring8', 'grid25' or"):
        parse_params({"modes": {"g": {"benchmark": "grid5"}}})
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        parse_params({"modes": {"g": {"benchmark": "ring8", "seeds": [1, 1]}}})
    with pytest.raises(ConfigError, match="mlp: .*stacked-mnist's are conv nets"):
        parse_params({"modes": {"g": {"benchmark": "stacked-mnist", "mlp": {"latent_dim": 8}}}})
    with pytest.raises(ConfigError, match=r"modes.g.mlp.generator_layers"):
        parse_params({"modes": {"g": {"benchmark": "ring8", "mlp": {"generator_layers": 0}}}})
    assert "ugan grid modes" in markdown({})


def test_the_2d_nets_are_set_per_benchmark_as_unrolled_gans_ring_used_them(tmp_path):
    """`mlp:` gives G and D their own depths and the latent its size (Metz et al. 2016, App. A:
    G with 2 hidden layers, D with 1, z of 256); a cell trains on them, RFGAN's DAE included."""
    unrolled = {"latent_dim": 256, "hidden_layers": 1, "generator_layers": 2}
    entry = _ring_entry(mlp=unrolled, seeds=[0])
    arch = get_benchmark("ring8").arch(entry, ModelParams())
    depth = {
        name: sum(isinstance(m, torch.nn.Linear) for m in net(arch).modules())
        for name, net in (("G", MLPGenerator), ("D", MLPDiscriminator))
    }
    assert depth == {"G": 3, "D": 2}  # hidden layers + the output layer
    assert MLPGenerator(arch).trunk[0].in_features == 256
    default = get_benchmark("ring8").arch(_ring_entry(), ModelParams())
    assert (default.latent_dim, default.hidden_layers, default.generator_layers) == (2, 3, 3)

    out = tmp_path / "modes" / "ring"
    summary = run_benchmark(Context("ring", entry, ModelParams(), Inputs(), out))
    assert set(summary["variants"]) == {"gan", "rfgan"}
    cell = json.loads((out / "cells" / "rfgan-s0" / "result.json").read_text())
    final = RunLayout(out / "cells" / "rfgan-s0").checkpoint_path(cell["steps"])
    trained = load_generator(final, "cpu")
    assert trained.trunk[0].in_features == 256 and trained.cfg.generator_layers == 2


def test_a_variant_with_its_own_steps_is_scored_at_its_own_last_step():
    # A benchmark of 50,000 steps with a 10,000-step variant was refused ("checkpoint_every
    # (50000) must be ≤ steps (10000)"): the variant inherited the benchmark's last step.
    variants = {"long": {"init": "random"}, "short": {"init": "random", "steps": 40}}
    raw = {"benchmark": "grid25", "steps": 100, "variants": variants}
    entry = parse_params({"modes": {"g": raw}}).modes["g"]
    long, short = entry.cell("long", 0).gan, entry.cell("short", 3).gan
    assert (long.steps, long.checkpoint_every, short.steps, short.checkpoint_every) == (
        100, 100, 40, 40,
    )  # fmt: skip
    every = parse_params({"modes": {"g": {**raw, "checkpoint_every": 20}}}).modes["g"]
    assert every.cell("short", 0).gan.checkpoint_every == 20
    with pytest.raises(ConfigError, match=r"checkpoint_every \(60\) must be ≤ steps \(40\)"):
        parse_params({"modes": {"g": {**raw, "checkpoint_every": 60}}})


def test_2d_points_go_through_the_batches_as_they_are():
    points = np.array([[0.5, -0.25], [0.1, 0.2]], dtype=np.float32)
    batch, _ = InfiniteBatches(points, np.zeros(2, dtype=np.int64), 2, seed=0).next()
    assert batch.dtype == torch.float32
    assert sorted(map(tuple, batch.tolist())) == sorted(map(tuple, points.tolist()))


def test_a_code_edit_retrains_every_reused_cell(tmp_path, monkeypatch):
    from ugan.modebench import runner

    package = shutil.copytree(
        runner.PACKAGE_ROOT, tmp_path / "ugan", ignore=shutil.ignore_patterns("__pycache__")
    )
    digest = runner.code_digest
    before = digest(package)
    with open(package / "losses.py", "a") as source:
        source.write("\n# an edit\n")
    after = digest(package)
    assert after != before, "the digest reads the sources"
    with open(package / "reporting" / "markdown.py", "a") as source:  # no cell can run it
        source.write("\n# an edit to the report\n")
    assert digest(package) == after, "an edit outside the cells' import closure keeps them"

    out = tmp_path / "modes" / "ring"
    ctx = Context("ring", _ring_entry(), ModelParams(), Inputs(), out)
    monkeypatch.setattr(runner, "code_digest", lambda: before)
    run_benchmark(ctx)
    written = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}
    assert len(written) == 4
    monkeypatch.setattr(runner, "code_digest", lambda: after)  # the package, edited
    run_benchmark(ctx)
    assert all(p.stat().st_mtime_ns != mtime for p, mtime in written.items()), "all retrained"


def test_a_linear_output_trains_and_scores_in_the_mixtures_own_coordinates(tmp_path):
    """`mlp.output: identity` (Unrolled GAN's ring): the nets see the ring at radius 2, G's
    output is linear, and its samples are scored where they are, not rescaled."""
    raw = _ring_entry(mlp={"output": "identity"}, seeds=[0], variants={"gan": {"init": "random"}})
    bench, scaled = get_benchmark("ring8").bound(raw), get_benchmark("ring8").bound(_ring_entry())
    assert (bench.scale, scaled.scale) == (1.0, 5.0)  # ring8's extent: radius 2 + 5 σ
    points = bench.data(raw, Inputs()).train[0]
    assert np.linalg.norm(points, axis=1).mean() == pytest.approx(2.0, abs=0.05)
    ring = torch.as_tensor(points[:2000])
    assert bench.score(ring, Inputs())["modes_covered"] == 8
    assert scaled.score(ring, Inputs())["registered_points"] == 0  # read ×5: off the ring
    assert get_benchmark("ring8").scale == 5.0, "binding leaves the registry's benchmark alone"

    out = tmp_path / "modes" / "ring"
    summary = run_benchmark(Context("ring", raw, ModelParams(), Inputs(), out))
    generator = load_generator(RunLayout(out / "cells" / "gan-s0").checkpoint_path(10), "cpu")
    assert generator.cfg.output == "identity" and summary["reference"]["modes_covered"] == 8
    with pytest.raises(ConfigError, match="output"):
        _ring_entry(mlp={"output": "sigmoid"})
