"""`gan.prior` (the latent a generator trains on) and `gan.lr_decay` (GAAN §4.1's staircase
decay): which prior each method draws, that the decay reaches every optimizer of a method, that
a resumed run decays exactly like an uninterrupted one, and the errors of bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ugan.config.load import parse_params
from ugan.config.schema import ModeBenchmarkParams
from ugan.core.errors import ConfigError
from ugan.core.paths import RunLayout
from ugan.methods.gaan import GAANMethod
from ugan.methods.gan import GANMethod
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import optimizers_of
from ugan.training.gan import build_method, train_gan

TINY = {"steps": 5, "checkpoint_every": 2, "batch_size": 16, "log_every": 1}
DECAY = {"every": 2, "rate": 0.5}


def _run(method: str, init: str = "random", **overrides):
    raw = {"gan": TINY, "runs": {"r": {"init": init, "method": method, **overrides}}}
    return parse_params(raw).run("r")


def _random_init(arch) -> dict:
    return {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}


def _decoder_init(arch, prior: str) -> dict:
    torch.manual_seed(7)
    generator = Generator(arch)
    init_weights(generator)
    return generator_payload(generator, prior)


@pytest.mark.parametrize(
    ("method", "random_default"), [("gan", "normal"), ("gaan", "uniform"), ("began", "uniform")]
)
def test_the_prior_is_the_runs_else_the_decoders_else_the_methods(
    method, random_default, tiny_arch
):
    def prior(init: dict, **overrides) -> str:
        kind = "vae" if "state_dict" in init else "random"
        return build_method(tiny_arch, _run(method, kind, **overrides), init, 0.02).prior

    random = _random_init(tiny_arch)
    assert prior(random) == random_default
    for chosen in ("normal", "uniform"):
        assert prior(random, prior=chosen) == chosen
    if method != "began":  # BEGAN builds its own generator: no transferred decoder
        assert prior(_decoder_init(tiny_arch, "uniform")) == "uniform"
        assert prior(_decoder_init(tiny_arch, "normal"), prior="uniform") == "uniform"


@pytest.mark.parametrize("chosen", ["normal", "uniform"])
def test_a_method_trains_on_the_prior_it_reports(chosen, tiny_arch):
    for method in ("gan", "gaan"):
        built = build_method(tiny_arch, _run(method, prior=chosen), _random_init(tiny_arch), 0.02)
        z = built._noise(4000, torch.zeros(1))
        inside = bool((z.abs() <= 1).all())
        assert inside == (chosen == "uniform"), (method, chosen, z.abs().max())
        assert abs(float(z.mean())) < 0.05


def _train(name: str, run, tiny_arch, tiny_data, tmp_path) -> Path:
    with StageRun("train_gan", {}, run_key="r", log_models=False) as tracker:
        train_gan(
            "r",
            run,
            tiny_arch,
            tiny_data,
            _random_init(tiny_arch),
            tmp_path / name,
            tracker,
            resume_root=tmp_path / f"resume-{name}",
        )
    return RunLayout(tmp_path / name).losses_csv


@pytest.mark.parametrize(("method", "cls"), [("gan", GANMethod), ("gaan", GAANMethod)])
def test_lr_decay_steps_every_optimizer_and_a_resumed_run_decays_the_same(
    method, cls, tiny_arch, tiny_data, tmp_path, monkeypatch
):
    run = _run(method, lr_decay=DECAY, optim={"lr": 0.01})
    real_step, seen = cls.train_step, []

    def recording(self, next_batch):
        seen.append({name: o.param_groups[0]["lr"] for name, o in optimizers_of(self).items()})
        return real_step(self, next_batch)

    monkeypatch.setattr(cls, "train_step", recording)
    full = _train("full", run, tiny_arch, tiny_data, tmp_path)
    expected = [0.01, 0.01, 0.005, 0.005, 0.0025]  # lr × 0.5^⌊done / 2⌋ at steps 1…5
    assert len(seen[0]) == (3 if method == "gaan" else 2)
    for lrs, lr in zip(seen, expected, strict=True):
        assert lrs == pytest.approx(dict.fromkeys(lrs, lr))

    calls = []

    def interrupted_at_step_4(self, next_batch):
        calls.append(1)
        if len(calls) == 4:  # after the resume state of step 2, with the lr decayed once
            raise KeyboardInterrupt
        return recording(self, next_batch)

    monkeypatch.setattr(cls, "train_step", interrupted_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        _train("cut", run, tiny_arch, tiny_data, tmp_path)
    monkeypatch.setattr(cls, "train_step", recording)
    seen.clear()
    resumed = _train("cut", run, tiny_arch, tiny_data, tmp_path)  # steps 3…5
    for lrs, lr in zip(seen, expected[2:], strict=True):
        assert lrs == pytest.approx(dict.fromkeys(lrs, lr))
    # To float32 rounding, not byte for byte: the first training of a test process now and
    # then prints a loss of step 1 one digit apart (0.0117186 vs 0.011719 at %.6g, ~1 run in
    # 40), before any resume; a wrong lr after the resume moves steps 3-5 by far more.
    assert _losses(resumed) == pytest.approx(_losses(full), rel=1e-4, abs=1e-6)


def _losses(path: Path) -> list[float]:
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + TINY["steps"], lines
    return [float(value) for line in lines[1:] for value in line.split(",")]


def test_without_lr_decay_the_learning_rate_stays(tiny_arch, tiny_data, tmp_path, monkeypatch):
    real_step, seen = GANMethod.train_step, []

    def recording(self, next_batch):
        seen.append(self.opt_g.param_groups[0]["lr"])
        return real_step(self, next_batch)

    monkeypatch.setattr(GANMethod, "train_step", recording)
    _train("plain", _run("gan", optim={"lr": 0.01}), tiny_arch, tiny_data, tmp_path)
    assert seen == [0.01] * 5


def test_began_refuses_lr_decay_and_the_old_gaan_prior_key_is_named():
    with pytest.raises(ConfigError, match="lr_decay does not apply to method 'began'"):
        _run("began", lr_decay=DECAY)
    with pytest.raises(ConfigError, match=r"gaan\.prior"):
        _run("gaan", gaan={"prior": "uniform"})
    with pytest.raises(ConfigError, match="rate"):
        _run("gan", lr_decay={"every": 10, "rate": 1.5})
    with pytest.raises(ConfigError, match="prior"):
        _run("gan", prior="laplace")


def test_a_mode_benchmark_gives_its_prior_and_decay_to_every_variant_unless_it_sets_its_own():
    entry = ModeBenchmarkParams.model_validate(
        {
            "benchmark": "grid25",
            "prior": "uniform",
            "lr_decay": {"every": 100, "rate": 0.9},
            "variants": {
                "gan": {"init": "random"},
                "own": {"init": "random", "prior": "normal", "lr_decay": {"every": 5, "rate": 1}},
            },
        }
    )
    shared, own = entry.cell("gan", 0).gan, entry.cell("own", 0).gan
    assert (shared.prior, shared.lr_decay.every, shared.lr_decay.rate) == ("uniform", 100, 0.9)
    assert (own.prior, own.lr_decay.every, own.lr_decay.rate) == ("normal", 5, 1.0)
