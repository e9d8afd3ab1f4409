"""The cells of a mode-coverage benchmark in worker processes (`ugan.modebench.pool`): the same
scores as one after another, every cell's MLflow run in the shared sqlite store, a failing cell
failing the benchmark with its own error while the finished ones are kept, and `workers`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from ugan.config.load import parse_params
from ugan.config.profiles import apply_profile, load_profile
from ugan.config.schema import ModeBenchmarkParams, ModelParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import ConfigError, ResumeMismatchError
from ugan.core.paths import RESUME_ROOT, SPOOL_ROOT
from ugan.core.runtime import JOBS_ENV, available_cores
from ugan.modebench.benchmarks import Inputs
from ugan.modebench.order import longest_first
from ugan.modebench.pool import resolve_workers, run_parallel
from ugan.modebench.runner import Context, run_benchmark
from ugan.tracking.spool import pending

ROOT = Path(__file__).resolve().parents[1]
CELLS = ["gan-s0", "gan-s1", "wgan-gp-s0", "wgan-gp-s1"]  # the params' order
FINISHED_LINE = re.compile(r"modes/ring: ([a-z-]+-s\d) finished in \d+\.\d s \(\d/\d\)")


def _entry(workers: int | str) -> ModeBenchmarkParams:
    """2 variants × 2 seeds of ring8, a few steps, no pretraining."""
    raw = {
        "benchmark": "ring8",
        "seeds": [0, 1],
        "steps": 30,
        "batch_size": 32,
        "num_samples": 200,
        "workers": workers,
        "variants": {
            "gan": {"init": "random"},
            "wgan-gp": {"init": "random", "loss": "wgan-gp", "n_critic": 2},
        },
    }
    return parse_params({"modes": {"ring": raw}}).modes["ring"]


def _scores(out: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())["scores"]
        for p in sorted(out.glob("cells/*/result.json"))
    }


def _cell_runs(uri: str) -> dict[str, object]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ugan")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`ugan.benchmark` = 'ring'"
    )
    return {run.data.tags["ugan.run_key"].removeprefix("ring/"): run for run in runs}


def test_cells_in_two_processes_score_as_one_after_another_and_all_reach_the_store(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # resume states and spools under tmp_path, for the workers too
    outs, uris = {}, {}
    for workers in (1, 2):
        uris[workers] = f"sqlite:///{tmp_path / f'mlflow-{workers}.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uris[workers])  # inherited by the workers
        outs[workers] = tmp_path / f"workers-{workers}" / "ring"
        run_benchmark(Context("ring", _entry(workers), ModelParams(), Inputs(), outs[workers]))
        output = capsys.readouterr().out
        assert sorted(FINISHED_LINE.findall(output)) == CELLS, output
        if workers == 1:  # one after another in the order they go to the pool: longest first
            assert FINISHED_LINE.findall(output) == CELLS[2:] + CELLS[:2], output
        assert ("4 cells on 2 processes" in output) == (workers == 2)

    serial, parallel = _scores(outs[1]), _scores(outs[2])
    assert sorted(parallel) == CELLS
    assert parallel == serial, "the scores do not depend on the number of workers"
    assert len({json.dumps(s, sort_keys=True) for s in parallel.values()}) > 1, "cells differ"

    # Every cell trained in a worker logged its run to the one sqlite store, finished.
    runs = _cell_runs(uris[2])
    assert sorted(runs) == CELLS
    for key, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.metrics["modes_covered"] == parallel[key]["modes_covered"]
        assert "d_loss" in run.data.metrics
    assert pending(tmp_path / SPOOL_ROOT) == [], "nothing left in a spool"

    # `workers` is not part of a cell's fingerprint: one process reuses the workers' cells.
    run_benchmark(Context("ring", _entry(1), ModelParams(), Inputs(), outs[2]))
    output = capsys.readouterr().out
    assert output.count("unchanged, reused") == 4 and "finished in" not in output


def test_a_cell_failing_in_a_worker_fails_the_benchmark_with_its_error_and_keeps_the_others(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    # The last cell submitted (the cells go longest first: wgan-gp-s0, wgan-gp-s1, gan-s0, gan-s1)
    # has a resume state made with other params: that cell raises in its worker.
    bad = tmp_path / RESUME_ROOT / "modes/ring/gan-s1/state_00000010.pt"
    save_checkpoint(bad, {"step": 10, "fingerprint": {"steps": 1}})
    out = tmp_path / "modes" / "ring"
    ctx = Context("ring", _entry(2), ModelParams(), Inputs(), out)
    with pytest.raises(ResumeMismatchError, match="cannot resume") as raised:
        run_benchmark(ctx)
    assert any("gan-s1" in note for note in raised.value.__notes__)
    remote = str(raised.value.__cause__)  # the worker's traceback
    assert "Traceback" in remote and "in latest" in remote and "ResumeMismatchError" in remote
    assert "gan-s1 failed: ResumeMismatchError" in capsys.readouterr().out

    # The cells submitted before it had started, so they finished and kept their results.
    others = [cell for cell in CELLS if cell != "gan-s1"]
    assert sorted(_scores(out)) == others
    runs = _cell_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")  # conftest's store
    assert runs["gan-s1"].info.status == "FAILED"
    assert {runs[key].info.status for key in others} == {"FINISHED"}

    bad.unlink()  # the fault fixed: the next execution trains that cell only
    kept = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}
    run_benchmark(ctx)
    output = capsys.readouterr().out
    assert output.count("unchanged, reused") == 3
    assert FINISHED_LINE.findall(output) == ["gan-s1"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert sorted(_scores(out)) == CELLS


def test_cells_go_to_the_pool_longest_first_by_method_steps_and_critic_updates():
    profile = load_profile("repro-grid25", ROOT / "profiles")
    grid = apply_profile(yaml.safe_load((ROOT / "params.yaml").read_text()), profile)[0]
    entry = parse_params(grid).modes["grid25"]  # GAN 50k steps, WGAN-GP 20k × 5 critics, GAAN
    runs = {(v, s): entry.cell(v, s) for v in entry.variants for s in (0, 1)}
    todo = {cell: f"args of {cell}" for cell in runs}
    ordered = longest_first(todo, runs)
    assert [cell[0] for cell in ordered] == ["gaan"] * 2 + ["wgan-gp"] * 2 + ["gan"] * 2
    assert ordered[("gan", 1)] == "args of ('gan', 1)" and list(ordered)[-2:] == [
        ("gan", 0),
        ("gan", 1),
    ], "ties keep their order"


def test_workers_is_a_positive_number_or_auto_and_auto_shares_the_cores(monkeypatch):
    for bad in (0, -2, "many", 1.5):
        with pytest.raises(ConfigError, match=r"modes\.ring\.workers: .*number of processes"):
            _entry(bad)
    assert ModeBenchmarkParams(benchmark="ring8").workers == "auto"

    monkeypatch.delenv(JOBS_ENV, raising=False)
    cores = available_cores()
    assert resolve_workers("auto", cells=1000) == cores
    assert resolve_workers("auto", cells=1) == 1, "no more processes than cells"
    assert resolve_workers(6, cells=4) == 4 and resolve_workers(3, cells=40) == 3
    monkeypatch.setenv(JOBS_ENV, str(cores))  # as many stage processes as cores: one each
    assert resolve_workers("auto", cells=1000) == 1
    monkeypatch.setenv(JOBS_ENV, "1")
    assert resolve_workers("auto", cells=1000, device="cuda") == 1, "one process drives a GPU"


# A cell as source text run by `exec` (a builtin, so the spawned workers can unpickle it): cell 0
# is stopped like a training loop on Ctrl-C, every other cell leaves a file saying it ran.
CELL = """
from pathlib import Path
if cell == 0:
    raise KeyboardInterrupt("stopped by signal SIGINT")
Path(folder, f"ran-{cell}").write_text("trained")
"""


def test_a_stopped_worker_starts_none_of_the_cells_the_pool_had_handed_it(tmp_path):
    # One worker: the pool queues the next cells to it before cell 0's stop comes back.
    cells = {cell: ({"cell": cell, "folder": str(tmp_path)},) for cell in range(4)}
    with pytest.raises(KeyboardInterrupt, match="SIGINT") as raised:
        run_parallel(exec, CELL, cells, 1, "t")
    assert any("cell 0" in note for note in raised.value.__notes__)
    assert list(tmp_path.glob("ran-*")) == [], "a cell trained after the stop"


STAGE = """
import json
from pkgutil import resolve_name

from ugan.modebench.pool import run_parallel

if __name__ == "__main__":  # the workers import this file again, as the stage's, without this
    found = run_parallel(resolve_name, "ugan.modebench.pool:__file__", {1: (), 2: ()}, 2, "t")
    print(json.dumps(sorted(set(found.values()))))
"""


def test_workers_import_the_package_the_stage_runs_from_a_copied_src(tmp_path):
    """As DVC runs a stage in a copied project (tests/test_pipeline.py): PYTHONPATH=src, the
    stage a script file. The spawned workers must import that copy, not an installed ugan."""
    copy = shutil.copytree(
        ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "stage.py").write_text(STAGE)
    env = {**os.environ, "PYTHONPATH": "src"}
    result = subprocess.run(
        [sys.executable, "stage.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (found,) = json.loads(result.stdout.splitlines()[-1])  # one file, whichever worker ran the task
    assert Path(tmp_path, found).resolve() == copy / "ugan/modebench/pool.py"
