"""The first look after `make run`, on a tiny project (real DVC, MLflow, headless Chromium).

`make run` runs `ugan run`: the pipeline, then the champion check of the nightly flow, by the
same code. What a user then looks at: the DVC metrics (numbers only, short names), the README's
`dvc exp show` command (fits 120 columns with each run's final and best FID), and `dvc plots
show` (the report's figures as images: drawn without fetching any script, so offline too).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from nightly_harness import BIN, _tiny_project, sh
from test_ui_browser import chromium_or_skip, save_screenshot, start_chromium, wait_until

from ugan.core.runtime import available_cores
from ugan.pipeline import champion as champ

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("dcgan", "dcgan-unbalanced")
# The README's command: without the Created column, DVC's dependency hashes and the
# path-prefixed columns, the metrics and the changed params fit 120 columns.
EXP_SHOW = ["dvc", "exp", "show", "--no-pager", "--only-changed"]
EXP_SHOW_DROP = ["--drop", "Created|.*/|evaluation$|runs$"]


@pytest.fixture(scope="session")
def browser_installed() -> tuple[str, str]:
    """Session-wide, so a missing browser stops its test before the pipeline runs."""
    return chromium_or_skip()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny project after `ugan run`, as `make run` leaves it: (path, env, output)."""
    path = tmp_path_factory.mktemp("first-look") / "project"
    path.mkdir()
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(path / "src"),  # the copy's code runs
        MLFLOW_TRACKING_URI=f"sqlite:///{path / 'mlflow.db'}",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        COLUMNS="120",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for name in ("UGAN_PIPELINE_ID", "UGAN_PARENT_RUN_ID"):
        env.pop(name, None)
    _tiny_project(path, env)
    return path, env, _ugan_run(path, env)


def _ugan_run(path: Path, env: dict) -> str:
    cmd = [sys.executable, "-m", "ugan.pipeline.cli", "run"]
    result = subprocess.run(cmd, cwd=path, env=env, capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def _parent(env: dict) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ugan").experiment_id
    runs = client.search_runs(
        [experiment], "tags.`ugan.stage` = 'pipeline'", order_by=["start_time DESC"]
    )
    return runs[0]


def test_make_run_registers_the_champion_by_the_nightly_flows_rule(made):
    path, env, output = made
    best = champ.pick_candidate(path, list(RUNS))  # the flow's rule: lowest final FID
    assert f"champion: {best.run_key} (FID {best.fid:.3f}, v1) is the first champion" in output
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias(champ.DEFAULT_MODEL, champ.CHAMPION)
    assert client.get_run(version.run_id).info.run_name == f"train_gan@{best.run_key}"
    assert float(version.tags[champ.FID_TAG]) == best.fid
    parent = _parent(env)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ugan.champion.decision"] == "first"
    assert re.search(r"/#/experiments/\d+/runs\?workflowType=machine_learning", output)

    again = _ugan_run(path, env)  # every stage cached: the same generator, already champion
    assert "is already the champion: nothing to compare" in again
    assert _parent(env).data.tags["ugan.champion.decision"] == "unchanged"


def test_make_run_trains_the_runs_side_by_side_on_a_multicore_cpu(made):
    """Two cores: both runs' cells at once (ugan.pipeline.side_by_side), each line of a cell
    prefixed with its run; the cells' MLflow runs (train_gan then evaluate) overlap in time. One
    core: in turn. A cell's span, not its ~2 s training's: a cell can wait a moment on DVC's
    repository lock (retried every 0.5 s) while the other starts, so two tiny trainings alone
    may miss each other on a loaded machine (CI, stop 43) although their cells ran at once."""
    path, env, output = made
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ugan").experiment_id

    def run_of(name: str) -> mlflow.entities.RunInfo:
        return client.search_runs([experiment], f"attributes.run_name = '{name}'")[-1].info

    spans = {
        key: (run_of(f"train_gan@{key}").start_time, run_of(f"evaluate@{key}").end_time)
        for key in RUNS
    }
    (a_start, a_end), (b_start, b_end) = spans.values()
    overlapped = a_start < b_end and b_start < a_end
    if available_cores() >= 2:
        assert "runs side by side: dcgan, dcgan-unbalanced (2 at once" in output
        assert all(f"[{key}] Running stage 'train_gan@{key}'" in output for key in RUNS)
        assert overlapped, spans
    else:
        assert "runs side by side" not in output and not overlapped, spans


def _leaves(tree, prefix: str = ""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, f"{name}.")
        else:
            yield name, value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_the_dvc_metrics_are_numbers_under_short_names(made):
    path, env, _ = made
    stages = yaml.safe_load((path / "dvc.yaml").read_text())["stages"]
    declared = [
        next(iter(entry)) if isinstance(entry, dict) else entry
        for stage in stages.values()
        for entry in stage.get("do", stage).get("metrics", [])
    ]
    assert declared == ["evaluation/${key}/score.json"]
    printed = sh(["dvc", "metrics", "show"], path, env)
    print(f"$ dvc metrics show\n{printed}")
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], path, env))
    (workspace,) = shown.values()  # {revision: {"data": {file: {"data": metrics}}}}
    files = workspace["data"]
    assert sorted(files) == sorted(f"evaluation/{run}/score.json" for run in RUNS)
    for run in RUNS:
        score = json.loads((path / f"evaluation/{run}/score.json").read_text())
        assert files[f"evaluation/{run}/score.json"]["data"] == score
        assert dict(_leaves(score)).keys() == {f"{run}.best_fid", f"{run}.fid"}
        assert all(_is_number(v) and math.isfinite(v) for _, v in _leaves(score))
        metrics = json.loads((path / f"evaluation/{run}/metrics.json").read_text())
        assert score[run] == {"fid": metrics["final"]["fid"], "best_fid": metrics["best_fid"]}
        words = [name for name, value in _leaves(metrics) if not _is_number(value)]
        assert not words, f"evaluation/{run}/metrics.json: not numbers: {words}"
        info = json.loads((path / f"evaluation/{run}/info.json").read_text())
        assert info["run"] == run and info["feature_network"]["name"] == "classifier"
        assert info["inception_score"] == {"available": True, "reason": None}


def test_the_readmes_dvc_exp_show_fits_120_columns_with_each_runs_fids(made):
    path, env, _ = made
    output = sh([*EXP_SHOW, *EXP_SHOW_DROP], path, env)
    print(f"$ {' '.join(EXP_SHOW)} --drop '{EXP_SHOW_DROP[1]}'\n{output}")
    lines = output.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 120, output
    header = next(line.split() for line in lines if "Experiment" in line)
    names = {f"{r}.{n}" for r in RUNS for n in ("best_fid", "fid")}
    assert header[0] == "Experiment" and sorted(header[1:]) == sorted(names), output
    workspace = next(line.split() for line in lines if line.split()[:1] == ["workspace"])
    shown = dict(zip(header[1:], map(float, workspace[1:]), strict=True))
    scores = {}
    for run in RUNS:
        scores |= dict(_leaves(json.loads((path / f"evaluation/{run}/score.json").read_text())))
    assert shown == pytest.approx(scores, rel=1e-4), output
    # DVC's own default, for the record: every dependency hash counts as changed against a
    # commit without dvc.lock, and DVC folds the columns that do not fit into "…".
    print(f"$ {' '.join(EXP_SHOW)}\n{sh(EXP_SHOW, path, env)}")


def test_dvc_plots_show_draws_every_plot_offline(browser_installed, made, tmp_path):
    path, env, _ = made
    sh(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], path, env)
    page = tmp_path / "plots" / "index.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page fetches a script"
    browser = start_chromium(
        tmp_path / "chromium",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: nothing may be fetched
        "--proxy-server=http://127.0.0.1:9",
    )
    try:
        browser.get(page.as_uri())
        drawn = wait_until(lambda: _drawn_images(browser), "the plots, drawn", timeout=30)
        assert sorted(Path(src).name.split("_")[-1] for src in drawn) == [
            "fid.png",
            "is.png",
            "losses.png",
            "prdc.png",
            "samples.png",
            "trajectories.png",  # modes_trajectories.png: here a panel saying why it is empty
        ]
        shot = save_screenshot(browser, tmp_path, "dvc-plots.png")
    finally:
        browser.quit()
    from PIL import Image, ImageStat

    with Image.open(shot) as image:
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 20, "a blank page"
    for src in drawn:  # each plotted figure: marks on a white background, not a blank image
        with Image.open(page.parent / src) as image:
            grey = image.convert("L")
            dark = sum(grey.histogram()[:200]) / (grey.width * grey.height)
        assert dark > 0.01, f"{src}: blank"


def _drawn_images(browser) -> list[str]:
    """The `src` of every image once all are loaded with a size, else []."""
    from selenium.webdriver.common.by import By

    images = browser.find_elements(By.TAG_NAME, "img")
    loaded = [
        i.get_attribute("src").removeprefix(browser.current_url.rsplit("/", 1)[0] + "/")
        for i in images
        if browser.execute_script("return arguments[0].complete", i)
        and int(i.get_attribute("naturalWidth") or 0) > 100
    ]
    return loaded if images and len(loaded) == len(images) else []
