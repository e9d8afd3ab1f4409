"""A mode-coverage cell is scored at every checkpoint it keeps: per cell, over seeds, as a table
and a figure (`ugan.modebench.trajectory`)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from PIL import Image

from ugan.config.load import parse_params
from ugan.config.schema import ModelParams
from ugan.core.paths import RunLayout
from ugan.modebench.benchmarks import Inputs
from ugan.modebench.runner import SCORE_SEED, Context, run_benchmark, score_checkpoints
from ugan.modebench.tables import markdown
from ugan.modebench.trajectory import aggregate, trajectory_figure, trajectory_table
from ugan.nets.generator_file import load_generator, noise, sample
from ugan.reporting.modes_section import FIGURE, modes_section


def _entry(**overrides):
    raw = {
        "benchmark": "ring8",
        "seeds": [0, 1],
        "steps": 12,
        "checkpoint_every": 4,
        "batch_size": 32,
        "num_samples": 200,
        "workers": 1,
        "variants": {"gan": {"init": "random"}},
        **overrides,
    }
    return parse_params({"modes": {"ring": raw}}).modes["ring"]


class MeanOfSamples:
    """A score that moves with any change of the generator: the mean sample coordinate."""

    def score(self, samples: torch.Tensor, inputs) -> dict[str, float]:
        return {"mean": float(samples.mean())}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")  # the cwd: resume states under its .ugan/
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        summary = run_benchmark(
            Context("ring", _entry(), ModelParams(), Inputs(), project / "ring")
        )
    return project / "ring", summary


@pytest.fixture(autouse=True)
def _in_a_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # another module's workers may train a "ring" at once


def test_every_checkpoint_is_scored_and_the_last_is_the_cells_score(trained):
    out, summary = trained
    cell = json.loads((out / "cells" / "gan-s1" / "result.json").read_text())
    assert [point["step"] for point in cell["trajectory"]] == [4, 8, 12]  # in step order
    assert cell["trajectory"][-1]["scores"] == cell["scores"]
    per_step = summary["variants"]["gan"]["trajectory"]["modes_covered"]
    assert [point["step"] for point in per_step] == [4, 8, 12]
    assert per_step[-1]["mean"] == summary["variants"]["gan"]["metrics"]["modes_covered"]["mean"]
    assert len(per_step[0]["values"]) == 2  # both seeds


def test_each_step_is_scored_on_its_own_checkpoint_with_the_seeds_scoring_z(trained):
    out, _ = trained
    layout = RunLayout(out / "cells" / "gan-s1")
    scores, last = score_checkpoints(MeanOfSamples(), Inputs(), layout, 1, 2, 200, "cpu")
    assert sorted(scores) == [4, 8, 12]
    assert len({s["mean"] for s in scores.values()}) == 3, "the generator moved between saves"
    generator = load_generator(layout.checkpoint_path(8), "cpu")
    z = noise(200, 2, generator.prior, seed=SCORE_SEED + 1)
    assert scores[8]["mean"] == pytest.approx(float(sample(generator, z).mean()))
    assert float(last.mean()) == pytest.approx(scores[12]["mean"])


def test_the_table_and_the_figure_show_the_steps(trained, tmp_path):
    _, summary = trained
    text = markdown({"ring": summary})
    assert "modes at each checkpoint (mean over seeds)" in text
    table = trajectory_table(summary, "modes_covered", 1)
    assert [c.strip() for c in table.splitlines()[0].split("|")[2:5]] == ["4", "8", "12"]
    path = trajectory_figure({"ring": summary}, {"ring": "modes_covered"}, tmp_path / "t.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300


def test_one_step_only_gives_no_table_and_no_figure(tmp_path):
    cells = [{"trajectory": [{"step": 10, "scores": {"modes_covered": 3.0}}]}]
    summary = {
        "benchmark": "ring8",
        "reference": {"modes_covered": 8},
        "variants": {"gan": {"trajectory": aggregate(cells, ["modes_covered"])}},
    }
    assert trajectory_table(summary, "modes_covered", 1) is None
    assert trajectory_figure({"r": summary}, {"r": "modes_covered"}, tmp_path / "t.png") is None
    assert not (tmp_path / "t.png").exists()


def test_the_report_embeds_the_curves_when_a_benchmark_has_them(trained, tmp_path):
    _, summary = trained
    text = modes_section({"ring": summary}, tmp_path)
    assert "## Mode-coverage benchmarks" in text and f"]({FIGURE})" in text
    with Image.open(tmp_path / FIGURE) as image:
        assert image.format == "PNG" and image.width > 300


def test_without_curves_the_report_writes_the_figure_and_does_not_embed_it(trained, tmp_path):
    one_step = copy.deepcopy(trained[1])  # as if scored at the last step only
    for variant in one_step["variants"].values():
        variant["trajectory"] = {}
    for modes in (None, {"ring": one_step}):
        (tmp_path / FIGURE).unlink(missing_ok=True)
        text = modes_section(modes, tmp_path)
        assert FIGURE not in text and ("## Mode-coverage" in text) == bool(modes)
        with Image.open(tmp_path / FIGURE) as image:  # DVC's declared output, always there
            grey = image.convert("L")
            dark = sum(grey.histogram()[:200]) / (grey.width * grey.height)
        assert dark > 0.01, "the panel says why it is empty"


def test_seeds_are_aggregated_at_the_steps_they_share():
    def cell(**scores):
        return {"trajectory": [{"step": int(k[1:]), "scores": {"m": v}} for k, v in scores.items()]}

    (point,) = aggregate([cell(s5=1.0, s10=3.0), cell(s10=5.0, s20=7.0)], ["m"])["m"]
    assert point["step"] == 10 and point["mean"] == 4.0 and point["values"] == [3.0, 5.0]
    assert point["low"] < 4.0 < point["high"]


def test_scoring_every_checkpoint_leaves_the_trained_generator_as_it_was(trained, tmp_path):
    """Turning a profile's trajectory on must not move its recorded final scores."""
    out, summary = trained
    once = tmp_path / "ring"
    final_only = run_benchmark(
        Context("ring", _entry(checkpoint_every=12), ModelParams(), Inputs(), once)
    )
    for seed in (0, 1):
        a, b = (
            RunLayout(root / "cells" / f"gan-s{seed}").checkpoint_path(12) for root in (out, once)
        )
        weights_a = load_generator(a, "cpu").state_dict()
        weights_b = load_generator(b, "cpu").state_dict()
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert final_only["variants"]["gan"]["metrics"] == summary["variants"]["gan"]["metrics"]
