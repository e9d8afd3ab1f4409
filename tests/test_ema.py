"""The generator's weight average (`gan.ema`, ugan.training.ema): params, the update, the
checkpoint files, the resume state (bit-exact), the fingerprint and the DVC params."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from test_fast_paths import _StopAtCall  # train_gan interrupted at a chosen step

from ugan.config.load import parse_params
from ugan.core.checkpoint_io import load_checkpoint
from ugan.core.errors import ConfigError, ResumeMismatchError
from ugan.core.paths import RunLayout
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.tracking.stage_run import StageRun
from ugan.training.ema import GeneratorEMA
from ugan.training.gan import resume_fingerprint, train_gan

ROOT = Path(__file__).resolve().parents[1]
TINY = {"steps": 6, "checkpoint_every": 2, "batch_size": 16, "log_every": 1}


def _run(method: str = "gan", ema: float | None = 0.9, **gan):
    raw = {"gan": {**TINY, "ema": ema, **gan}, "runs": {"r": {"init": "random", "method": method}}}
    return parse_params(raw).run("r")


# -- params ----------------------------------------------------------------------------------


def test_ema_is_off_by_default_and_a_bad_decay_names_the_key_and_the_range():
    assert parse_params({}).gan.ema is None
    assert parse_params({"gan": {"ema": 0.999}}).gan.ema == 0.999
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ConfigError, match=r"gan.ema: .*\[0, 1\).*null for no EMA"):
            parse_params({"gan": {"ema": bad}})
    with pytest.raises(ConfigError, match="gan.ema: Input should be a valid number"):
        parse_params({"gan": {"ema": True}})  # not 1.0


def test_ema_is_in_the_resume_fingerprint_and_a_dvc_param_of_train_gan(tiny_arch):
    off = resume_fingerprint("r", _run(ema=None), tiny_arch, {})
    on = resume_fingerprint("r", _run(ema=0.999), tiny_arch, {})
    assert (off["ema"], on["ema"]) == (None, 0.999)
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train_gan"]["do"]
    assert "gan" in stage["params"]  # the whole section: gan.ema included
    assert "src/ugan/training/ema.py" in stage["deps"]


# -- the update ------------------------------------------------------------------------------


def test_the_update_averages_parameters_with_the_warmed_up_decay_and_copies_buffers(tiny_arch):
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    ema = GeneratorEMA(g, decay=0.5)
    start = {k: v.clone() for k, v in ema.generator.state_dict().items()}
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
        for b in g.buffers():
            if b.is_floating_point():
                b.add_(3.0)
    assert ema.current_decay() == 2 / 11  # t = 1: min(0.5, 2 / 11)
    ema.update(g)
    live = g.state_dict()
    for name, p in ema.generator.named_parameters():
        assert torch.allclose(p, start[name].lerp(live[name], 1 - 2 / 11))
        assert not p.requires_grad
    for name, b in ema.generator.named_buffers():
        assert torch.equal(b, live[name])
    for _ in range(20):
        ema.update(g)
    assert ema.updates == 21 and ema.current_decay() == 0.5  # (1 + 22) / (10 + 22) > 0.5


# -- training: files, resume -----------------------------------------------------------------


def _train(tmp_path, tiny_arch, tiny_data, name: str, run, wrap=None) -> RunLayout:
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    with StageRun("train_gan", {}, run_key="r", log_models=False) as tracker:
        train_gan(
            "r", run, tiny_arch, tiny_data, generator_payload(g), tmp_path / name, tracker,
            resume_root=tmp_path / f"resume-{name}", wrap=wrap,
        )  # fmt: skip
    return RunLayout(tmp_path / name)


@pytest.mark.parametrize("method", ["gan", "gaan"])
def test_an_interrupted_run_resumes_its_ema_bit_exactly(tmp_path, tiny_arch, tiny_data, method):
    """6 steps in one go vs 3 + resume (from the state of step 2, then steps 3…6): every EMA
    checkpoint equal tensor for tensor, and each one a generator file load_generator reads."""
    run = _run(method, ema=0.9)
    full = _train(tmp_path, tiny_arch, tiny_data, "full", run)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, tiny_arch, tiny_data, "cut", run, wrap=_StopAtCall(4))
    cut = RunLayout(tmp_path / "cut")
    assert cut.checkpoint_steps(ema=True) == [2]
    _train(tmp_path, tiny_arch, tiny_data, "cut", run)
    assert full.checkpoint_steps(ema=True) == full.checkpoint_steps() == [2, 4, 6]
    assert cut.checkpoint_steps(ema=True) == [2, 4, 6]
    for step in (2, 4, 6):
        a = load_checkpoint(full.ema_checkpoint_path(step))["state_dict"]
        b = load_checkpoint(cut.ema_checkpoint_path(step))["state_dict"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), step
        raw = load_checkpoint(full.checkpoint_path(step))["state_dict"]
        assert any(not torch.equal(a[k], raw[k]) for k in a)  # an average, not a copy of G
        generator = load_generator(full.ema_checkpoint_path(step))
        assert generator.prior == load_generator(full.checkpoint_path(step)).prior


def test_without_ema_no_average_is_written_or_saved(tmp_path, tiny_arch, tiny_data):
    layout = _train(tmp_path, tiny_arch, tiny_data, "off", _run(ema=None, steps=2))
    assert layout.checkpoint_steps() == [2] and layout.checkpoint_steps(ema=True) == []


def test_a_run_cannot_resume_with_another_ema_setting(tmp_path, tiny_arch, tiny_data):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, tiny_arch, tiny_data, "x", _run(ema=None), wrap=_StopAtCall(4))
    with pytest.raises(ResumeMismatchError, match=r"ema: saved None → now 0.99"):
        _train(tmp_path, tiny_arch, tiny_data, "x", _run(ema=0.99))


def test_with_ema_the_average_is_the_logged_model_the_champion_loads(
    tmp_path, tiny_arch, tiny_data
):
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    with StageRun("train_gan", {}, run_key="r", log_models=True) as tracker:
        train_gan(
            "r", _run(ema=0.9, steps=2), tiny_arch, tiny_data, generator_payload(g),
            tmp_path / "out", tracker, resume_root=tmp_path / "resume",
        )  # fmt: skip
        logged = tracker.client.download_artifacts(
            tracker.run_id, "generator/generator.pt", str(tmp_path)
        )
    payload = load_checkpoint(Path(logged))
    layout = RunLayout(tmp_path / "out")
    ema = load_checkpoint(layout.ema_checkpoint_path(2))["state_dict"]
    assert payload["ema"] is True and payload["state_dict"].keys() == ema.keys()
    assert all(torch.equal(payload["state_dict"][k], ema[k]) for k in ema)
