"""Every method: one step each on tiny nets, the combination table and config, `train_gan` end to
end for every registered method, and the real pipeline with the DAE stage (BEGAN: test_began.py;
RFGAN and GAAN: test_rfgan_gaan.py)."""

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
import yaml
from method_helpers import batches, random_init, tiny_run, vae_init

from ugan.config.load import parse_params
from ugan.core.checkpoint_io import load_checkpoint
from ugan.core.errors import ConfigError
from ugan.core.paths import RunLayout
from ugan.methods.began import BEGANMethod
from ugan.methods.catalog import combinations, combinations_markdown
from ugan.methods.table import METHODS, get_method
from ugan.nets.generator_file import GENERATORS, load_generator
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import build_method, train_gan

# -- every method ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_takes_a_finite_step_that_moves_its_generator(
    method, tiny_arch, tiny_data, dae_file
):
    m = build_method(tiny_arch, tiny_run(method), random_init(tiny_arch), 0.02)
    before = [p.detach().clone() for p in m.generator.parameters()]
    losses = {k: float(v) for k, v in m.train_step(batches(tiny_data)).items()}
    assert {"d_loss", "g_loss"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values()), losses
    after = list(m.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert type(m.generator) in GENERATORS.values()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_weight_decay_reaches_every_optimizer_of_every_method(method, tiny_arch, dae_file):
    """GAAN §4.1 tuned its baselines with weight decay: `optim.weight_decay` is Adam's on
    every net a method trains, and a negative one is refused by name."""
    run = tiny_run(method, optim={"weight_decay": 1e-3})
    m = build_method(tiny_arch, run, random_init(tiny_arch), 0.02)
    groups = [
        g for o in vars(m).values() if isinstance(o, torch.optim.Optimizer) for g in o.param_groups
    ]
    assert len(groups) >= 2 and {g["weight_decay"] for g in groups} == {1e-3}
    with pytest.raises(ConfigError, match=r"optim.weight_decay"):
        tiny_run(method, optim={"weight_decay": -1.0})


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
    m = build_method(tiny_arch, tiny_run(method, **overrides), random_init(tiny_arch), 0.02)
    d = m.discriminator
    assert _cross_sample_gradient(d, x) == 0.0
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in d.trunk.modules())
    plain = build_method(tiny_arch, tiny_run("gan"), random_init(tiny_arch), 0.02).discriminator
    assert _cross_sample_gradient(plain, x) > 1e-6


@pytest.mark.parametrize(
    ("method", "overrides"), [("gan", {"loss": "wgan-gp"}), ("rfgan", {}), ("gaan", {})]
)
def test_critic_norm_sets_the_discriminators_normalisation(method, overrides, tiny_arch, dae_file):
    """`critic_norm`: auto (layer under a penalty, batch otherwise), or the run's choice; "none"
    is the WGAN-GP and GAAN authors' MNIST critic: no normalisation layer at all."""
    kinds = {"batch": torch.nn.BatchNorm2d, "layer": torch.nn.GroupNorm}
    penalised = method != "rfgan"  # rfgan's default loss is ns: no penalty, batch norm
    for chosen, expected in [("auto", "layer" if penalised else "batch"), *((k, k) for k in kinds)]:
        run = tiny_run(method, critic_norm=chosen, **overrides)
        trunk = build_method(tiny_arch, run, random_init(tiny_arch), 0.02).discriminator.trunk
        assert {type(m) for m in trunk.modules()} & set(kinds.values()) == {kinds[expected]}
    run = tiny_run(method, critic_norm="none", **overrides)
    trunk = build_method(tiny_arch, run, random_init(tiny_arch), 0.02).discriminator.trunk
    assert not {type(m) for m in trunk.modules()} & set(kinds.values())
    with pytest.raises(ConfigError, match="critic_norm.*'auto', 'batch', 'layer' or 'none'"):
        tiny_run(method, critic_norm="group")
    with pytest.raises(ConfigError, match="critic_norm does not apply to method 'began'"):
        tiny_run("began", critic_norm="none")


@pytest.mark.parametrize("method", ["rfgan", "gaan"])
def test_rfgan_and_gaan_start_from_the_transferred_decoder(method, tiny_arch, dae_file):
    init = vae_init(tiny_arch)
    m = build_method(tiny_arch, tiny_run(method, init="vae"), init, 0.02)
    state = m.generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in init["state_dict"].items())


@pytest.mark.parametrize(("method", "loss"), [("gan", "ns"), ("gan", "wgan"), ("rfgan", "lsgan")])
def test_a_split_d_update_steps_d_on_the_real_then_the_fake_batch(
    method, loss, tiny_arch, tiny_data, dae_file
):
    """`d_update: split` is Keras-GAN's D step: an update on the real batch, then one on the
    fake batch, each loss taken before its own update, the logged d_loss their sum."""
    joint, split = (
        build_method(
            tiny_arch, tiny_run(method, loss=loss, d_update=how), random_init(tiny_arch), 0.02
        )
        for how in ("joint", "split")
    )
    split.discriminator.load_state_dict(joint.discriminator.state_dict())
    split.generator.load_state_dict(joint.generator.state_dict())
    start = {k: v.clone() for k, v in split.discriminator.state_dict().items()}
    torch.manual_seed(3)
    real, labels = batches(tiny_data)()
    seen = []  # what D scored at each of its forward passes, and its weights then
    hook = split.discriminator.register_forward_hook(
        lambda d, args, out: seen.append((args[0], [p.detach().clone() for p in d.parameters()]))
    )
    torch.manual_seed(5)
    losses = split.train_step(lambda: (real, labels))
    hook.remove()
    # real batch at the start weights, then the fake batch at weights its update already moved
    assert torch.equal(seen[0][0], real) and not torch.equal(seen[1][0], real)
    first = [p for k, p in start.items() if k in dict(split.discriminator.named_parameters())]
    assert all(torch.equal(a, b) for a, b in zip(seen[0][1], first, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(seen[1][1], first, strict=True))
    state = split.opt_d.state_dict()["state"]
    assert {int(s["step"]) for s in state.values()} == {2}  # two Adam updates in one step
    assert all(p.abs().max() <= 0.01 for p in split.d_parameters()) or loss != "wgan"
    torch.manual_seed(5)
    joint_losses = joint.train_step(lambda: (real, labels))
    assert {int(s["step"]) for s in joint.opt_d.state_dict()["state"].values()} == {1}
    assert float(losses["d_loss"]) != float(joint_losses["d_loss"])
    assert math.isfinite(float(losses["d_loss"]))


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
        (
            {"init": "random", "method": "gaan", "d_update": "split"},
            "runs.r: d_update 'split' applies to methods ['gan', 'rfgan']; method 'gaan'",
        ),
        (
            {"init": "random", "loss": "wgan-gp", "d_update": "split"},
            "runs.r: d_update 'split' cannot train loss 'wgan-gp'",
        ),
        ({"init": "random", "d_update": "halves"}, "runs.r.d_update"),
    ],
)
def test_config_refuses_combinations_that_do_not_exist(run, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        parse_params({"runs": {"r": run}})
    if run.get("init") == "vae":
        assert "began: random; gaan: random, vae; gan: random, vae; rfgan: random, vae" in str(
            e.value
        )


def test_a_class_conditional_model_refuses_an_unconditional_method():
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
    run = tiny_run(method, init=init)
    generator_init = vae_init(tiny_arch) if init == "vae" else random_init(tiny_arch)
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
    run = tiny_run("began", began={"lambda_k": 0.05, "lr_halve_patience": 2})

    def train(name: str) -> Path:
        with StageRun("train_gan", {}, run_key="b", log_models=False) as tracker:
            train_gan(
                "b",
                run,
                tiny_arch,
                tiny_data,
                random_init(tiny_arch),
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
    from ugan.config.base import MethodName
    from ugan.methods.catalog import CATALOG

    assert set(CATALOG) == set(METHODS) == set(get_args(MethodName))
