import pytest
import torch

from ugan.config.load import parse_params
from ugan.core.paths import RunLayout
from ugan.models.transfer import transfer_decoder
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import build_method, train_gan


def _init(arch, seed=0):
    torch.manual_seed(seed)
    g = Generator(arch)
    init_weights(g)
    return generator_payload(g)


def test_same_seed_same_discriminator_init_whatever_the_generator(tiny_arch):
    params = parse_params({"gan": {"steps": 4, "checkpoint_every": 2}})
    run = params.run("dcgan")
    a = build_method(tiny_arch, run, _init(tiny_arch, 0), 0.02)
    b = build_method(tiny_arch, run, _init(tiny_arch, 1), 0.02)
    for (k, va), vb in zip(
        a.discriminator.state_dict().items(), b.discriminator.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.generator.project[0].weight, b.generator.project[0].weight)


def test_the_real_pair_shares_the_discriminator_init(tiny_arch):
    """The pair as the pipeline builds it: the ordinary run from init_random's recipe (no
    weights, drawn with the run's seed), the unbalanced one from transfer's VAE weights."""
    params = parse_params({"gan": {"steps": 4, "checkpoint_every": 2}, "model": {}})
    recipe = {"arch": tiny_arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    recipe["init_std"] = 0.02
    torch.manual_seed(123)  # the VAE's decoder: any weights other than the recipe's draw
    decoder = Generator(tiny_arch)
    vae = generator_payload(transfer_decoder(decoder.state_dict(), Generator(tiny_arch)))
    vae["source"] = "vae"
    ordinary = build_method(tiny_arch, params.run("dcgan"), recipe, 0.02)
    unbalanced = build_method(tiny_arch, params.run("dcgan-unbalanced"), vae, 0.02)
    d_ordinary, d_unbalanced = (m.discriminator.state_dict() for m in (ordinary, unbalanced))
    assert d_ordinary.keys() == d_unbalanced.keys()
    for key, value in d_ordinary.items():
        assert torch.equal(value, d_unbalanced[key]), key
    for key, value in decoder.state_dict().items():
        assert torch.equal(unbalanced.generator.state_dict()[key], value), key
    assert not torch.equal(ordinary.generator.project[0].weight, decoder.project[0].weight)
    # Another seed draws another discriminator: the equality above is not vacuous.
    other = parse_params({"runs": {"x": {"init": "random", "seed": 1}}}).run("x")
    d_other = build_method(tiny_arch, other, recipe, 0.02).discriminator.state_dict()
    assert any(not torch.equal(v, d_other[k]) for k, v in d_ordinary.items())


def test_train_gan_writes_checkpoints_grids_and_losses(tiny_arch, tiny_data, tmp_path):
    params = parse_params(
        {"gan": {"steps": 6, "checkpoint_every": 3, "batch_size": 16, "log_every": 2}}
    )
    run = params.run("dcgan-unbalanced")
    init = _init(tiny_arch)
    with StageRun(
        "train_gan", {"gan": run.gan.model_dump()}, run_key="t", log_models=False
    ) as tracker:
        summary = train_gan(
            "t",
            run,
            tiny_arch,
            tiny_data,
            init,
            tmp_path / "t",
            tracker,
            resume_root=tmp_path / "r",
        )
    layout = RunLayout(tmp_path / "t")
    assert summary["checkpoints"] == [3, 6] == layout.checkpoint_steps()
    assert layout.sample_path(6).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = layout.losses_csv.read_text().splitlines()
    assert lines[0] == "step,d_loss,g_loss,d_real,d_fake" and len(lines) == 7
    trained = load_generator(layout.checkpoint_path(6))
    assert not torch.equal(trained.project[0].weight, init["state_dict"]["project.0.weight"])
    client = tracker.client
    history = client.get_metric_history(tracker.run_id, "d_loss")
    assert [m.step for m in history] == [2, 4, 6]
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_training_is_deterministic_on_cpu(tiny_arch, tiny_data, tmp_path):
    params = parse_params({"gan": {"steps": 3, "checkpoint_every": 3, "batch_size": 16}})
    run = params.run("dcgan")
    outs = []
    for name in ("a", "b"):
        with StageRun("train_gan", {}, run_key=name, log_models=False) as tracker:
            train_gan(
                name,
                run,
                tiny_arch,
                tiny_data,
                _init(tiny_arch),
                tmp_path / name,
                tracker,
                resume_root=tmp_path / "r",
            )
        outs.append(load_generator(RunLayout(tmp_path / name).checkpoint_path(3)).state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_method_names_in_config_match_the_registry():
    from typing import get_args

    from ugan.config.base import MethodName
    from ugan.methods.table import METHODS

    assert set(get_args(MethodName)) == set(METHODS)


def test_conditional_training_runs_and_uses_labels(tiny_data, tmp_path):
    import dataclasses

    from ugan.nets.arch import ArchConfig

    arch = dataclasses.replace(ArchConfig(latent_dim=8, base_channels=4), num_classes=10)
    params = parse_params(
        {
            "model": {"conditional": True},
            "gan": {"steps": 4, "checkpoint_every": 4, "batch_size": 16},
        }
    )
    run = params.run("dcgan-unbalanced")
    with StageRun("train_gan", {}, run_key="c", log_models=True) as tracker:
        summary = train_gan(
            "c",
            run,
            arch,
            tiny_data,
            _init(arch),
            tmp_path / "c",
            tracker,
            resume_root=tmp_path / "r",
        )
    assert summary["checkpoints"] == [4]
    g = load_generator(RunLayout(tmp_path / "c").checkpoint_path(4))
    assert g.cfg.num_classes == 10
    assert "generator" in {a.path for a in tracker.client.list_artifacts(tracker.run_id)}


def test_conditional_needs_labelled_data():
    import pytest

    from ugan.core.errors import ConfigError

    with pytest.raises(ConfigError, match="model.conditional: true needs labelled data"):
        parse_params({"model": {"conditional": True}}).model.arch(28, 1, 0)


def test_random_init_recipe_draws_the_generator_from_the_run_seed(tiny_arch):
    recipe = {"arch": tiny_arch.to_dict(), "source": "random", "init_std": 0.02}
    a = build_method(tiny_arch, parse_params({}).run("dcgan"), recipe, 0.02)
    b = build_method(tiny_arch, parse_params({"gan": {"seed": 1}}).run("dcgan"), recipe, 0.02)
    again = build_method(tiny_arch, parse_params({}).run("dcgan"), recipe, 0.02)
    weight = lambda m: m.generator.project[0].weight  # noqa: E731
    assert torch.equal(weight(a), weight(again)) and not torch.equal(weight(a), weight(b))
    assert weight(a).std().item() == pytest.approx(0.02, rel=0.1)
