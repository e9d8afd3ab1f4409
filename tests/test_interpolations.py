"""Latent interpolations (ugan.evaluation.interpolations) and the evaluate stage's EMA rows
(ugan.evaluation.ema), through `evaluate_run` as the stage calls it."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from ugan.config.load import parse_params
from ugan.core import runtime
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.paths import RunLayout
from ugan.core.runtime import available_cores
from ugan.evaluation.evaluate import evaluate_run
from ugan.evaluation.interpolations import (
    PAIRS,
    STEPS,
    endpoints,
    frozen_statistics,
    interpolation_images,
    lerp,
    modes_for,
    slerp,
)
from ugan.nets.classifier import Classifier
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.tracking.stage_run import StageRun

T = torch.linspace(0.0, 1.0, STEPS)


def test_paths_start_and_end_exactly_at_the_pair_and_slerp_stays_on_the_sphere():
    z_a, z_b = torch.randn(16, 32).double(), torch.randn(16, 32).double()
    for path in (lerp(z_a, z_b, T.double()), slerp(z_a, z_b, T.double())):
        assert path.shape == (16, STEPS, 32)
        assert torch.equal(path[:, 0], z_a) and torch.equal(path[:, -1], z_b)
    unit_a, unit_b = z_a / z_a.norm(dim=1, keepdim=True), z_b / z_b.norm(dim=1, keepdim=True)
    arc = slerp(unit_a, unit_b, torch.linspace(0.0, 1.0, 33).double())
    assert torch.allclose(arc.norm(dim=2), torch.ones(16, 33, dtype=torch.double), atol=1e-12)
    chord = lerp(unit_a, unit_b, T.double())  # a straight line cuts inside the sphere
    assert (chord[:, STEPS // 2].norm(dim=1) < 0.99).all()
    same = slerp(unit_a, unit_a.clone(), T.double())  # Ω = 0: no division by sin 0
    assert torch.isfinite(same).all() and torch.allclose(same, unit_a[:, None].expand_as(same))


def test_the_grid_endpoints_are_the_generators_outputs_at_the_two_latents(tiny_arch):
    torch.manual_seed(0)
    generator = Generator(tiny_arch)
    init_weights(generator)
    generator.prior = "normal"
    frozen = frozen_statistics(generator)
    assert not frozen.training and generator.training  # a copy; G itself untouched
    z_a, z_b = endpoints(tiny_arch.latent_dim, "normal")
    assert z_a.shape == (PAIRS, tiny_arch.latent_dim)
    with torch.no_grad():
        at_a, at_b = frozen(z_a), frozen(z_b)
    for mode in modes_for("normal"):
        images = interpolation_images(frozen, z_a, z_b, mode)
        assert images.shape == (PAIRS, STEPS, 1, 28, 28)
        assert torch.equal(images[:, 0], at_a) and torch.equal(images[:, -1], at_b)
        assert not torch.equal(images[:, 1], at_a)  # it moves in between
    # frozen statistics: an image depends on its own latent only, not on the rest of the batch
    with torch.no_grad():
        alone = frozen(z_a[:1])
    assert torch.allclose(alone, at_a[:1], atol=1e-6)
    assert modes_for("uniform") == ["linear"]


def _classifier(tmp_path):
    path = tmp_path / "classifier.pt"
    save_checkpoint(path, Classifier().to_payload())
    return path


def _evaluate(tmp_path, tiny_data):
    params = parse_params({"eval": {"num_samples": 64, "kid_subset_size": 16}})
    with StageRun("evaluate", {}, run_key="dcgan", log_models=False) as tracker:
        evaluate_run(
            "dcgan", params.run("dcgan"), params.eval, tiny_data, _classifier(tmp_path),
            tmp_path / "runs", tmp_path / "evaluation", tracker,
        )  # fmt: skip
    return tmp_path / "evaluation"


def _checkpoints(tmp_path, tiny_arch, ema: bool) -> RunLayout:
    layout = RunLayout(tmp_path / "runs" / "dcgan")
    for step in (1, 2):
        torch.manual_seed(step)
        g = Generator(tiny_arch)
        init_weights(g)
        save_checkpoint(layout.checkpoint_path(step), generator_payload(g, step=step))
        if ema:
            with torch.no_grad():
                for p in g.parameters():
                    p.mul_(0.5)
            payload = generator_payload(g, step=step, ema=True)
            save_checkpoint(layout.ema_checkpoint_path(step), payload)
    layout.losses_csv.write_text("step,d_loss,g_loss\n1,1.0,1.0\n2,0.9,1.1\n")
    return layout


def test_evaluate_scores_the_ema_generator_beside_the_raw_one(tmp_path, tiny_arch, tiny_data):
    layout = _checkpoints(tmp_path, tiny_arch, ema=True)
    assert load_generator(layout.ema_checkpoint_path(2)).prior == "normal"
    out = _evaluate(tmp_path, tiny_data)
    with open(out / "fidelity_ema.csv") as handle:
        rows = list(csv.DictReader(handle))
    with open(out / "fidelity.csv") as handle:
        raw = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["1", "2"] and rows[0].keys() == raw[0].keys()
    assert rows[-1]["fid"] != raw[-1]["fid"]  # other weights, other score
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ema"]["final"]["step"] == 2
    assert metrics["ema"]["final"]["fid"] == pytest.approx(float(rows[-1]["fid"]), rel=1e-5)
    score = json.loads((out / "score.json").read_text())["dcgan"]
    assert score["ema_fid"] == metrics["ema"]["final"]["fid"] and "fid" in score
    names = sorted(p.name for p in (out / "interpolations").iterdir())
    assert names == [f"step_00000{s}_{m}.png" for s in (1, 2) for m in ("linear", "slerp")]


def test_without_ema_the_rows_are_empty_and_the_scores_unchanged(tmp_path, tiny_arch, tiny_data):
    _checkpoints(tmp_path, tiny_arch, ema=False)
    out = _evaluate(tmp_path, tiny_data)
    assert (out / "fidelity_ema.csv").read_text().splitlines()[1:] == []
    assert "ema" not in json.loads((out / "metrics.json").read_text())
    assert set(json.loads((out / "score.json").read_text())["dcgan"]) == {"fid", "best_fid"}


@pytest.mark.skipif(available_cores() < 2, reason="one core: nothing to re-size")
def test_evaluate_takes_the_cores_a_sibling_run_left(tmp_path, tiny_arch, tiny_data, monkeypatch):
    """Started beside another run (one thread on 2 cores), evaluate re-sizes torch's pool
    between checkpoints once the jobs file says it is alone."""
    jobs = tmp_path / "jobs.txt"
    for name in ("OMP_NUM_THREADS", runtime.THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(runtime.JOBS_FILE_ENV, str(jobs))
    monkeypatch.setattr(runtime, "RESIZE_SECONDS", 0.0)
    before = torch.get_num_threads()
    try:
        jobs.write_text("2")
        assert runtime.configure_threads() == available_cores() // 2
        jobs.write_text("1")  # the sibling ended
        _checkpoints(tmp_path, tiny_arch, ema=False)
        _evaluate(tmp_path, tiny_data)
        assert torch.get_num_threads() == available_cores()
    finally:
        torch.set_num_threads(before)
