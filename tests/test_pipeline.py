"""The real pipeline under real DVC, in a temporary git repo, on tiny params.

One full `dvc repro` is shared by the tests of this module (module-scoped fixture); the caching
test then edits params and checks which stages DVC reruns.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch
import yaml
from pipeline_project import Project, _ran, _sh, new_project

from ugan.core.runtime import available_cores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Project, str]:
    proj = new_project(tmp_path_factory.mktemp("pipeline"))
    return proj, proj.repro()


def test_full_pipeline_runs_every_stage_and_writes_the_report(project):
    proj, output = project
    assert _ran(output) == {
        "prepare",
        "train_classifier",
        "pretrain_vae",
        "pretrain_dae",
        "init_random",
        "transfer",
        "train_gan@dcgan",
        "train_gan@dcgan-unbalanced",
        "evaluate@dcgan",
        "evaluate@dcgan-unbalanced",
        "modes",
        "report",
    }
    p = proj.path
    assert (p / "data/prepared/dataset.npz").is_file()
    assert json.loads((p / "metrics/transfer.json").read_text())["max_abs_difference"] == 0.0
    for key in ("dcgan", "dcgan-unbalanced"):
        assert sorted(x.name for x in (p / f"runs/{key}/samples").iterdir()) == [
            "step_000004.png",
            "step_000008.png",
            "step_000012.png",
        ]
        fidelity = (p / f"evaluation/{key}/fidelity.csv").read_text().splitlines()
        assert fidelity[0].startswith("step,fid,isc_mean,isc_std,kid_mean,kid_std,diversity_ratio")
        assert len(fidelity) == 4
        metrics = json.loads((p / f"evaluation/{key}/metrics.json").read_text())
        assert metrics["losses"]["d_loss_std"] >= 0 and "fid" in metrics["floor"]
        assert 0 < metrics["diversity"]["msssim_real"] < 1
        info = json.loads((p / f"evaluation/{key}/info.json").read_text())
        assert info["run"] == key and info["init"] in ("random", "vae")
        assert fidelity[0].endswith("coverage,num_samples,num_reference,feature_dim,feature_sha256")
        assert info["scoring"]["num_samples"] == 200 and info["scoring"]["feature_dim"] == 128
        assert info["scoring"]["fid_singular"] is None  # N = 200 > d = 128
        assert 0 <= metrics["final"]["precision"] <= 1
        assert sorted(metrics["checkpoints"], key=int) == ["4", "8", "12"]
        score = json.loads((p / f"evaluation/{key}/score.json").read_text())
        assert score == {key: {"fid": metrics["final"]["fid"], "best_fid": metrics["best_fid"]}}
    report = (p / "reports/report.md").read_text()
    assert "dcgan-unbalanced" in report and re.search(r"(beats|does not beat) ordinary", report)
    for figure in ("fid.png", "is.png", "losses.png", "samples.png", "prdc.png"):
        assert (p / "reports" / figure).stat().st_size > 1000
    assert "## Precision, recall, density, coverage" in report and "Not compared" not in report
    assert set(json.loads((p / "reports/report.json").read_text())["runs"]) == {
        "dcgan",
        "dcgan-unbalanced",
    }
    modes = json.loads((p / "metrics/modes.json").read_text())["benchmarks"]["ring"]
    for variant in ("gan-unbalanced", "rfgan"):
        stat = modes["variants"][variant]["metrics"]["modes_covered"]
        assert stat["n"] == 2 and 0 <= stat["mean"] <= 8
        assert (p / f"modes/ring/cells/{variant}-s1/final.png").stat().st_size > 1000
    assert modes["reference"]["modes_covered"] == 8  # real points cover the whole ring
    assert "## Mode-coverage benchmarks" in report and "| gan-unbalanced" in report
    curve = modes["variants"]["rfgan"]["trajectory"]["modes_covered"]
    assert [point["step"] for point in curve] == [10, 20] and curve[-1]["mean"] == stat["mean"]
    assert "modes at each checkpoint (mean over seeds)" in report
    assert (p / "modes/trajectories.png").stat().st_size > 1000
    assert "![mode coverage at each checkpoint](modes_trajectories.png)" in report
    assert (p / "reports/modes_trajectories.png").stat().st_size > 1000
    # DVC's plots render from the declared files.
    _sh(["dvc", "plots", "show", "--json"], p, proj.env)


def test_pretrain_dae_trains_nothing_when_no_run_uses_rfgan(project):
    proj, output = project
    assert "pretrain_dae: no run uses rfgan, nothing to train" in output
    assert "unneeded" in torch.load(proj.path / "models/dae.pt", weights_only=True)
    assert json.loads((proj.path / "metrics/dae.json").read_text()) == {"steps": 0}
    assert not list((proj.path / "runs/dae/samples").glob("*.png"))
    client = mlflow.MlflowClient(proj.env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ugan")
    (dae,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'pretrain_dae'")
    assert dae.data.tags["ugan.skipped"] == "no run uses rfgan" and not dae.data.metrics


def test_every_stage_is_one_mlflow_run_grouped_by_pipeline(project):
    proj, _ = project
    client = mlflow.MlflowClient(proj.env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ugan")
    everything = client.search_runs([experiment.experiment_id])
    parents = [r for r in everything if r.data.tags.get("ugan.stage") == "pipeline"]
    runs = [r for r in everything if r not in parents]
    assert len(parents) == 1, "one parent run per pipeline execution"
    assert {r.data.tags.get("mlflow.parentRunId") for r in runs} == {parents[0].info.run_id}
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {
        "prepare",
        "train_classifier",
        "pretrain_vae",
        "pretrain_dae",
        "transfer",
        "train_gan@dcgan",
        "train_gan@dcgan-unbalanced",
        "evaluate@dcgan",
        "evaluate@dcgan-unbalanced",
        "modes",
        *(f"modes@ring/{part}-s{s}" for part in ("vae", "dae") for s in (0, 1)),  # per seed
        *(f"modes@ring/{v}-s{s}" for v in ("gan-unbalanced", "rfgan") for s in (0, 1)),
        "report",
    }
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["ugan.pipeline_id"] for r in runs}) == 1
    assert all(re.fullmatch(r"[0-9a-f]{40}", r.data.tags["mlflow.source.git.commit"]) for r in runs)
    gan = by_name["train_gan@dcgan-unbalanced"]
    assert (
        gan.data.tags["ugan.run_key"] == "dcgan-unbalanced" and gan.data.tags["ugan.init"] == "vae"
    )
    assert gan.data.params["gan.optim.lr"] == "0.0002" and gan.data.params["gan.steps"] == "12"
    assert [m.step for m in client.get_metric_history(gan.info.run_id, "g_loss")][-1] == 12
    artifacts = {a.path for a in client.list_artifacts(gan.info.run_id)}
    assert {"samples", "generator", "losses.csv"} <= artifacts
    logged = {a.path for a in client.list_artifacts(gan.info.run_id, "generator")}
    assert "generator/generator.pt" in logged  # the weights-only file the champion loads from
    evaluation = by_name["evaluate@dcgan"]
    assert len(client.get_metric_history(evaluation.info.run_id, "fid")) == 3


def test_dvc_reruns_only_what_changed(project):
    proj, _ = project
    _sh(["git", "add", "-A"], proj.path, proj.env)
    assert _ran(proj.repro()) == set(), "a second dvc repro must do nothing"

    proj.set_params({"gan": {"optim": {"lr": 0.0003}}})
    assert _ran(proj.repro()) == {
        "train_gan@dcgan",
        "train_gan@dcgan-unbalanced",
        "evaluate@dcgan",
        "evaluate@dcgan-unbalanced",
        "report",
    }

    proj.set_params({"vae": {"steps": 10}})
    assert _ran(proj.repro()) == {
        "pretrain_vae",
        "transfer",
        "train_gan@dcgan-unbalanced",
        "evaluate@dcgan-unbalanced",
        "report",
    }


def _changed(proj: Project) -> set[str]:
    """The stages `dvc status` reports as changed themselves (not through an upstream)."""
    return set(json.loads(_sh(["dvc", "status", "--json"], proj.path, proj.env) or "{}"))


def test_a_code_edit_changes_only_the_stages_that_run_it(project):
    proj, _ = project
    proj.repro()
    assert _changed(proj) == set()
    trainers = {"train_gan@dcgan", "train_gan@dcgan-unbalanced", "modes"}  # modes trains GANs
    edits = {
        "src/ugan/reporting/claims.py": {"report"},
        "src/ugan/training/gan.py": trainers,
        "src/ugan/models/vae.py": {"pretrain_vae", "modes"},  # modes pretrains its own VAEs
    }
    for module, expected in edits.items():
        with open(proj.path / module, "a") as handle:
            handle.write("# an edit\n")
        assert _changed(proj) == expected, module
        ran = _ran(proj.repro())
        assert expected <= ran and not ran & {"prepare", "train_classifier", "init_random"}, ran


def _outputs(proj: Project) -> dict[str, bytes]:
    """Every file the pipeline wrote (DVC's outputs, cached or not) and dvc.lock."""
    roots = ("data/prepared", "models", "metrics", "runs", "evaluation", "reports", "modes")
    files = [f for root in roots for f in (proj.path / root).rglob("*") if f.is_file()]
    files.append(proj.path / "dvc.lock")
    return {str(f.relative_to(proj.path)): f.read_bytes() for f in files}


# Each typo makes DVC run (and so first clear the outputs of) different stages: the resumable
# trainers (`persist` outputs, no run cache) and the report (restored from the run cache).
TYPOS = {
    "trainers": {"vae": {"steps": -1}, "gan": {"loss": "vanilla"}},
    "report": {"report": {"smoothing": 0}},
}


@pytest.mark.parametrize("typo", TYPOS)
def test_a_typo_stops_before_any_work_and_the_fix_brings_every_output_back(project, typo):
    proj, _ = project
    proj.repro()
    params_before = (proj.path / "params.yaml").read_text()
    before = _outputs(proj)
    proj.set_params(TYPOS[typo])
    result = subprocess.run(
        ["dvc", "repro", "--keep-going"],
        cwd=proj.path,
        env=proj.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert "error: invalid params" in output and _ran(output), output[-3000:]
    for key in TYPOS[typo]:
        assert f"  {key}." in output, output[-3000:]
    if typo == "trainers":
        allowed = "allowed values are 'ns', 'lsgan', 'wgan', 'wgan-gp', 'dragan' or"
        assert f"gan.loss: got 'vanilla', {allowed}" in output
        assert _outputs(proj) == before, "a stopped trainer must leave every output as it was"

    (proj.path / "params.yaml").write_text(params_before)
    fixed = proj.repro()
    assert _ran(fixed) == set(), fixed[-3000:]  # nothing retrained, nothing re-evaluated
    assert _outputs(proj) == before


@pytest.mark.parametrize("key", ["x;touch pwned_key", "x y"])
def test_a_run_key_never_reaches_a_shell(project, key):
    proj, _ = project
    params_before = (proj.path / "params.yaml").read_text()
    lock_before = (proj.path / "dvc.lock").read_text()
    proj.set_params({"runs": {key: {"init": "vae"}}})
    # --single-item: no upstream stage fails first. evaluate@ is refused by DVC itself (its
    # run's checkpoints do not exist); train_gan@ runs its cmd, which must not see the key.
    for stage in (f"train_gan@{key}", f"evaluate@{key}"):
        result = subprocess.run(
            ["dvc", "repro", "--single-item", stage],
            cwd=proj.path,
            env=proj.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "Traceback" not in output, output[-2000:]
        if stage.startswith("train_gan"):
            assert "run keys must match" in output and f"'{key}'" in output, output[-2000:]
        assert not (proj.path / "pwned_key").exists(), "the run key reached a shell"
    assert (proj.path / "dvc.lock").read_text() == lock_before
    (proj.path / "params.yaml").write_text(params_before)


def test_sigterm_records_nothing_as_done_and_the_rerun_resumes(project):
    proj, _ = project
    lock_before = (proj.path / "dvc.lock").read_text()
    params_before = (proj.path / "params.yaml").read_text()
    proj.set_params({"gan": {"steps": 400}})
    proc = subprocess.Popen(
        ["dvc", "repro", "train_gan@dcgan"],
        cwd=proj.path,
        env=proj.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    states = proj.path / ".ugan/resume/train_gan/dcgan"
    deadline = time.time() + 240
    while not list(states.glob("state_*.pt")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # as a CI cancel does: dvc and its stage together
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, output[-2000:]
    assert (proj.path / "dvc.lock").read_text() == lock_before
    assert list(states.glob("state_*.pt")), "the stopped stage must leave its resume state"

    rerun = _sh(["dvc", "repro", "train_gan@dcgan"], proj.path, proj.env)
    assert "resuming dcgan from step" in rerun
    assert "steps: 400" in (proj.path / "dvc.lock").read_text()
    # the tests after this one train at the fixture's steps (a grid left at 400 steps, with its
    # checkpoint every 4, took 600 s of the suite's 1,570 instead of ~90)
    (proj.path / "params.yaml").write_text(params_before)
    assert not list(states.glob("state_*.pt")), "a finished run clears its resume state"


def test_a_profile_grid_runs_as_a_dvc_experiment_with_claims_over_seeds(project):
    proj, _ = project
    (proj.path / "profiles").mkdir(exist_ok=True)
    (proj.path / "profiles/tiny.yaml").write_text(
        "description: two seeds of ordinary vs unbalanced DCGAN\n"
        "grid:\n  gans: {dcgan: {loss: ns}}\n  inits: [random, vae]\n  seeds: [0, 1]\n"
    )
    _sh(["git", "add", "-A"], proj.path, proj.env)
    _sh(["git", "commit", "-qm", "state before the grid"], proj.path, proj.env)
    output = _sh(
        [sys.executable, "-m", "ugan.pipeline.cli", "grid", "tiny", "--here"],
        proj.path,
        proj.env,
        timeout=1500,  # 8 stages and an experiment: ~2 min alone, far more beside other tests
    )
    ran = _ran(output)
    assert {"train_gan@dcgan-s0", "train_gan@dcgan-unbalanced-s1", "report"} <= ran
    assert not ran & {"prepare", "train_classifier", "pretrain_vae"}, "shared stages are cached"
    shown = json.loads(_sh(["dvc", "exp", "show", "--json"], proj.path, proj.env))
    assert "tiny-" in json.dumps(shown) and "best_fid" in json.dumps(shown)
    summary = json.loads((proj.path / "reports/report.json").read_text())
    claims = {c["claim"]: c for c in summary["claims"]}
    assert claims["2. FID better early"]["n"] == 2
    assert claims["2. FID better early"]["verdict"] in {"holds", "does not hold", "inconclusive"}
    assert "Claims of the paper, across seeds" in (proj.path / "reports/report.md").read_text()


def _vae_seeds(node, names: list[str]) -> dict[str, int]:
    """experiment name → its vae.seed, from anywhere in `dvc exp show --json`."""
    found = {}
    if isinstance(node, dict):
        if node.get("name") in names and node.get("data"):
            params = node["data"]["params"]["params.yaml"]["data"]
            found[node["name"]] = params["vae"]["seed"]
        nodes = node.values()
    else:
        nodes = node if isinstance(node, list) else []
    for child in nodes:
        found |= _vae_seeds(child, names)
    return found


def test_reproduce_runs_a_rows_profile_as_an_experiment_and_writes_its_verdict(project):
    """`ugan reproduce ROW`: the row's profile runs as a DVC experiment of its stage (`modes`
    for ring8's 5 seeds of RFGAN, `evaluate` of every run for BEGAN's γ sweep, `report` once per
    VAE seed for the Unbalanced GAN row; tiny here), the row is assessed from what it wrote,
    params.yaml gets its bytes back, the Stacked MNIST row names its classifier's error, and
    the table reaches MLflow."""
    proj, _ = project
    p = proj.path
    (p / "profiles").mkdir(exist_ok=True)
    variants = {"gan": {"init": "random"}, "rfgan": {"init": "random", "method": "rfgan"}}
    ring8 = {"benchmark": "ring8", "seeds": [0, 1, 2, 3, 4], "steps": 20, "batch_size": 32,
             "pretrain_steps": 10, "num_samples": 200, "variants": variants}  # fmt: skip
    profile = {"params": {"modes": {"ring8": ring8}}, "runs": {"dcgan": {"init": "random"}}}
    (p / "profiles/repro-ring8.yaml").write_text(yaml.safe_dump(profile))
    variants = {"gan": {"init": "random"}, "gaan": {"init": "random", "method": "gaan"},
                "wgan-gp": {"init": "random", "loss": "wgan-gp", "n_critic": 2}}  # fmt: skip
    stacked = {"benchmark": "stacked-mnist", "nets": "unrolled-k4", "seeds": [0], "steps": 4,
               "batch_size": 16, "num_samples": 64, "train_images": 64,
               "variants": variants}  # fmt: skip
    profile = {"params": {"modes": {"stacked-k4": stacked}}, "runs": {"dcgan": {"init": "random"}}}
    (p / "profiles/repro-stacked-mnist.yaml").write_text(yaml.safe_dump(profile))
    run = {"init": "random", "method": "began"}
    sweep = {f"began-g0{g}": run | {"began": {"gamma": int(g) / 10, "filters": 8}} for g in "357"}
    tiny = {"gan": {"steps": 12, "checkpoint_every": 4}}  # whatever earlier tests left in params
    (p / "profiles/repro-began-mnist.yaml").write_text(
        yaml.safe_dump({"params": tiny, "runs": sweep})
    )
    pair = {"dcgan": {"init": "random"}, "dcgan-unbalanced": {"init": "vae"}}
    (p / "profiles/repro-unbalanced-mnist.yaml").write_text(
        yaml.safe_dump({"params": tiny, "runs": pair})
    )
    _sh(["git", "add", "-A"], p, proj.env)
    _sh(["git", "commit", "-qm", "the ring8, BEGAN and Unbalanced GAN rows, tiny"], p, proj.env)
    before = (p / "params.yaml").read_bytes()
    cli = [sys.executable, "-m", "ugan.pipeline.cli", "reproduce"]
    bad = subprocess.run([*cli, "nope"], cwd=p, env=proj.env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown reproduction rows ['nope']" in bad.stderr
    assert "rfgan-ring8" in bad.stderr and not (p / "metrics/reproduction.json").exists()
    bad = subprocess.run([*cli, "-j", "0"], cwd=p, env=proj.env, capture_output=True, text=True)
    assert bad.returncode == 2 and "a whole number of jobs, 1 or more, not '0'" in bad.stderr

    # the workspace keeps the last experiment's outputs: ring8 and BEGAN last, as read below
    rows = ["unbalanced-mnist", "gaan-stacked-mnist", "rfgan-ring8", "began-mnist"]
    output = _sh([*cli, *rows, "--vae-seeds", "0", "1"], p, proj.env, timeout=2400)
    # a profile's runs train side by side as in `ugan run` (one per core), then `dvc exp run`
    # finds them cached and records the experiment; ring8's `modes` trains none of them
    side_by_side = "runs side by side: began-g03, began-g05, began-g07 (2 at once"
    assert (side_by_side in output) == (available_cores() >= 2)
    assert output.count("runs side by side: dcgan, dcgan-unbalanced") == (
        2 if available_cores() >= 2 else 0
    )
    assert (
        "runs side by side: dcgan,"
        not in output.split("profile repro-ring8")[1].split("reproduce: profile")[0]
    )
    assert (p / "params.yaml").read_bytes() == before
    rows = {r["row"]: r for r in json.loads((p / "metrics/reproduction.json").read_text())["rows"]}
    ring = rows["rfgan-ring8"]
    (check,) = ring["checks"]
    modes = json.loads((p / "metrics/modes.json").read_text())["benchmarks"]["ring8"]
    assert check["values"] == modes["variants"]["rfgan"]["metrics"]["modes_covered"]["values"]
    assert check["variant"] == "rfgan" and check["n"] == 5 and ring["steps"] == 20
    assert ring["verdict"] == ("reproduced" if min(check["values"]) >= 8 else "not reproduced")
    assert [b["variant"] for b in ring["beside"]] == ["gan"] and ring["run"]["wall_s"] > 0
    assert ring["run"]["commit"] == _sh(["git", "rev-parse", "HEAD"], p, proj.env).strip()
    stacked = rows["gaan-stacked-mnist"]  # Unrolled GAN's K/4 nets, one seed: never reproduced
    assert stacked["verdict"] == "not comparable" and stacked["seeds"] == [0]
    accuracy = json.loads((p / "metrics/classifier.json").read_text())["heldout_accuracy"]
    assert stacked["reason"].startswith("1 seeds; the bar asks for ≥ 3 (gaan ")
    assert "Mann-Whitney p" in stacked["reason"]  # each ordering's means and p, even unjudged
    assert stacked["reason"].endswith(
        f" — digits read by our classifier at {1 - accuracy:.1%} held-out error (GAAN's: 0.4%)"
    )
    assert set(stacked["checks"][0]["versus"]) == {"wgan-gp", "gan"}
    assert [c["variant"] for c in stacked["checks"]] == ["gaan", "wgan-gp"]
    # one experiment per VAE seed, each with its own VAE; 2 seeds are assessed, never reproduced
    unbalanced = rows["unbalanced-mnist"]
    assert unbalanced["verdict"] == "not comparable" and unbalanced["seeds"] == [0, 1]
    assert unbalanced["reason"] == "2 seeds; the bar asks for ≥ 5"
    assert {c["variant"] for c in unbalanced["checks"]} == {"gan/ns"}
    early = next(c for c in unbalanced["checks"] if c["metric"] == "2. FID better early")
    assert early["n"] == 2 and early["values"][0] != early["values"][1]
    experiments = unbalanced["run"]["experiment"].split(", ")
    assert [e[-5:] for e in experiments] == ["-vae0", "-vae1"]
    shown = json.loads(_sh(["dvc", "exp", "show", "--json"], p, proj.env))
    assert _vae_seeds(shown, experiments) == {experiments[0]: 0, experiments[1]: 1}
    began = rows["began-mnist"]  # the γ sweep: its runs trained and evaluated by the experiment
    assert began["verdict"] in ("reproduced", "not reproduced") and began["steps"] == 12
    assert "one seed per γ (0.3, 0.5, 0.7), at 12 steps" in began["reason"]
    g05 = json.loads((p / "evaluation/began-g05/metrics.json").read_text())["diversity"]
    gap = next(c for c in began["checks"] if c["metric"] == "msssim_gap_to_real")
    assert gap["variant"] == "began-g05" and gap["mean"] == g05["msssim"] - g05["msssim_real"]
    ranks = [c for c in began["checks"] if c["metric"] == "spearman_m_global_fid"]
    assert [c["variant"] for c in ranks] == ["began-g03", "began-g05", "began-g07"]
    assert all(c["shown"].endswith("over 3 checkpoints") for c in ranks)
    (probe,) = began["beside"]  # each class of the prepared digits, D trained on them alone
    assert probe["steps"] == 12 and probe["n"] == 10 and "classes ≤ γ: γ 0.3:" in probe["shown"]
    assert began["run"]["assess_s"] > 0
    assert began["run"]["experiment"] != ring["run"]["experiment"]
    assert began["run"]["experiment"] in _sh(["dvc", "exp", "show", "--json"], p, proj.env)
    assert ring["run"]["experiment"] in _sh(["dvc", "exp", "show", "--json"], p, proj.env)
    section = (p / "reports/reproduction.md").read_text()
    assert f"**rfgan-ring8: {ring['verdict']}**" in section and "| rfgan modes_covered" in section
    client = mlflow.MlflowClient(proj.env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ugan")
    (tracked,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'reproduce'")
    assert tracked.data.tags["ugan.verdict.rfgan-ring8"] == ring["verdict"]
    assert tracked.data.metrics["rfgan-ring8.rfgan.modes_covered"] == check["mean"]
    assert tracked.data.metrics["began-mnist.began-g05.msssim_gap_to_real"] == gap["mean"]
    # each seed kept as it ended: a second call trains nothing and reads the same table back
    kept = json.loads((p / "metrics/reproduction/unbalanced-mnist/vae-seed-1.json").read_text())
    assert kept["experiment"] == experiments[1] and kept["pairs"][0]["method"] == "gan"
    again = _sh([*cli, "unbalanced-mnist", "--vae-seeds", "0", "1"], p, proj.env)
    assert f"VAE seed 1 kept from experiment {experiments[1]}" in again
    table = json.loads((p / "metrics/reproduction.json").read_text())["rows"]
    assert next(r for r in table if r["row"] == "unbalanced-mnist") == unbalanced
