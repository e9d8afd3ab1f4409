"""Beyond one machine, for real on loopback: PostgreSQL, an MLflow server on it (artifacts proxied
by the server) and a Prefect server, started by `ugan.pipeline.services`; a bare git remote and
a DVC remote in a temporary folder; two `ugan worker`s (Prefect process workers), each in a
folder of its own standing in for a machine. `ugan cluster grid` sends a 4-cell grid (2 seeds ×
{random, vae}) to the pool; a second grid loses a worker to SIGKILL in the middle of a cell.

The services are installed where they can be (`apt-get install postgresql` as root); where they
cannot, the tests skip saying why, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import mlflow
import pytest
from cluster_harness import BIN, POOL, Cluster, kill_tree, sh

from ugan.pipeline.services import DB_USER, ServiceError, pg_binary

SHARED = ["prepare", "train_classifier", "pretrain_vae", "pretrain_dae", "init_random", "transfer"]
TRACKED_SHARED = [s for s in SHARED if s != "init_random"]  # init_random logs no MLflow run
KILL_PROFILE = (
    "description: two ordinary runs; one loses its machine\n"
    "grid:\n  gans: {dcgan: {loss: ns}}\n  inits: [random]\n  seeds: [2, 3]\n"
)


def _postgres_or_skip() -> None:
    try:
        pg_binary("initdb")
        return
    except ServiceError as error:
        reason = str(error)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], env=env,
                       capture_output=True)  # fmt: skip
        try:
            pg_binary("initdb")
            return
        except ServiceError as error:
            reason = f"{error} (apt-get install postgresql failed)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: the cluster services must run here: {reason}")
    pytest.skip(f"PostgreSQL cannot be installed here: {reason}")


def _sql(cluster: Cluster, query: str, *args) -> list[tuple]:
    import psycopg2

    services = cluster.services
    with psycopg2.connect(
        host=services.host, port=services.pg_port, dbname="mlflow", user=DB_USER,
        password=services.password(),
    ) as db, db.cursor() as cursor:  # fmt: skip
        cursor.execute(query, args)
        return cursor.fetchall()


RUNS_OF_GRID = """
    SELECT r.run_uuid, r.status, s.value AS stage, k.value AS run_key, r.artifact_uri
    FROM runs r
    JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'ugan.pipeline_id' AND p.value = %s
    JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'ugan.stage'
    LEFT JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'ugan.run_key'
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The services, two workers, and a 4-cell grid sent to them (and its wall times)."""
    _postgres_or_skip()
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        started = time.monotonic()
        services_s = cluster.start_services()
        seed = cluster.make_project()
        for name in ("machine-a", "machine-b"):
            cluster.start_worker(name)
        sent = time.monotonic()
        out = cluster.ugan("cluster", "grid", "tiny", "--pool", POOL, "--name", "g1",
                           "--json", str(cluster.base / "g1.json"), cwd=seed)  # fmt: skip
        result = json.loads((cluster.base / "g1.json").read_text())
        times = {"services": services_s, "grid": time.monotonic() - sent,
                 "total": time.monotonic() - started}  # fmt: skip
        print(f"cluster test times (s): {times}")
        yield cluster, seed, out, result
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_grid_fans_out_over_two_workers_and_lands_on_the_shared_services(grid):
    cluster, seed, out, result = grid
    cells = {cell["run_key"]: cell for cell in result["cells"]}
    keys = {"dcgan-s0", "dcgan-s1", "dcgan-unbalanced-s0", "dcgan-unbalanced-s1"}
    assert set(cells) == keys and result["ok"], out
    assert {c["state"] for c in cells.values()} == {"Completed"}
    assert {c["worker"] for c in cells.values()} == {"machine-a", "machine-b"}, "both ran cells"

    # The shared stages ran once, in the upstream flow run; every cell pulled them.
    assert sorted(result["upstream"]["ran"]) == sorted(SHARED)
    for key, cell in cells.items():
        assert sorted(cell["ran"]) == [f"evaluate@{key}", f"train_gan@{key}"], cell
    runs = _sql(cluster, RUNS_OF_GRID, "g1")
    per_stage = {}
    for _, status, stage, run_key, _ in runs:
        per_stage.setdefault(stage, []).append((run_key, status))
    for stage in TRACKED_SHARED:
        assert len(per_stage.get(stage, [])) == 1, (stage, per_stage.get(stage))

    # Every cell is MLflow runs with metrics in PostgreSQL and artifacts on the server.
    for key in keys:
        for stage in ("train_gan", "evaluate"):
            assert per_stage[stage].count((key, "FINISHED")) == 1, (stage, key)
    fids = dict(
        _sql(
            cluster,
            "SELECT k.value, m.value FROM latest_metrics m "
            "JOIN tags k ON k.run_uuid = m.run_uuid AND k.key = 'ugan.run_key' "
            "JOIN tags s ON s.run_uuid = m.run_uuid AND s.key = 'ugan.stage' AND s.value = "
            "'evaluate' JOIN tags p ON p.run_uuid = m.run_uuid AND p.key = 'ugan.pipeline_id' "
            "AND p.value = 'g1' WHERE m.key = 'fid'",
        )
    )
    assert set(fids) == keys
    logged = _sql(cluster, "SELECT count(DISTINCT run_uuid), count(*) FROM metrics "
                  "WHERE key = 'd_loss'")[0]  # fmt: skip
    assert logged == (4, 4 * 10 // 5), "per-step losses (log_every 5) of the 4 trainers"
    client = mlflow.MlflowClient(cluster.services.mlflow_uri)
    for run_id, _, stage, _, artifact_uri in runs:
        assert artifact_uri.startswith("mlflow-artifacts:"), artifact_uri  # proxied
        if stage == "train_gan":
            assert "losses.csv" in {a.path for a in client.list_artifacts(run_id)}
    stored = list((cluster.services.home / "artifacts").rglob("losses.csv"))
    assert len(stored) == 4, stored

    # The champion was decided from the server's scores: the lowest final FID of the 4.
    best = min(fids, key=fids.get)
    version = client.get_model_version_by_alias("ugan-generator", "champion")
    assert version.tags["ugan.run_key"] == best == result["champion"]["candidate"]["run_key"]
    assert float(version.tags["ugan.fid"]) == pytest.approx(fids[best])

    # Any clone sees the whole grid: dvc exp pull + dvc exp show.
    third = cluster.clone("third")
    env = cluster.env
    sh(["git", "checkout", "-q", "ugan/grids/g1"], third, env)
    names = [cells[k]["experiment"] for k in sorted(keys)]
    sh([str(BIN / "dvc"), "exp", "pull", "origin", *names], third, env)
    shown = json.loads(sh([str(BIN / "dvc"), "exp", "show", "--json"], third, env))
    listed = {e["name"]: e["revs"][0] for rev in shown for e in (rev.get("experiments") or [])}
    assert set(names) <= set(listed), sorted(listed)
    for key, name in zip(sorted(keys), names, strict=True):
        # Each experiment shows its scores as DVC metrics: its evaluate stage's score.json.
        score = listed[name]["data"]["metrics"][f"evaluation/{key}/score.json"]["data"]
        assert score[key]["fid"] == pytest.approx(fids[key]), (key, score)
    # ... and its outputs from the DVC remote (a cell's experiment holds its own run only).
    key = sorted(keys)[0]
    sh(["git", "checkout", "-q", listed[names[0]]["rev"]], third, env)
    sh([str(BIN / "dvc"), "pull", f"train_gan@{key}"], third, env)
    assert list((third / "runs" / key / "checkpoints").iterdir()), "checkpoints from the remote"


def _wait(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the grid ended first ({proc.returncode})")
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def _trigger(home, env, name: str) -> subprocess.CompletedProcess:
    """`ugan trigger --name`, once `ugan serve` has created the deployment."""
    cmd = [str(BIN / "ugan"), "trigger", "--name", name, "--timeout", "900"]
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True)
        if "has no deployment" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(2)


@pytest.mark.slow
def test_the_nightly_deployment_fans_its_runs_out_over_the_pool(grid):
    """`ugan serve --pool`: the nightly deployment sends params.yaml's runs to the pool as cells
    (the serving machine trains nothing), `ugan trigger` gets its result, and the champion is
    decided from the tracking server's scores of this nightly run."""
    cluster, _, _, _ = grid
    home = cluster.clone("nightly-host")  # the machine that serves the nightly deployment
    env = cluster.env | {"PREFECT_HOME": str(cluster.base / "nightly-prefect")}
    refused = subprocess.run([str(BIN / "ugan"), "serve", "--pool", POOL], cwd=home, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "params.yaml not found" in refused.stderr, refused.stderr
    sh(["git", "checkout", "-q", "main"], home, env)  # the team's branch (the remote has no HEAD)
    log = open(cluster.base / "serve.log", "w")
    serve = subprocess.Popen(
        [str(BIN / "ugan"), "serve", "--pool", POOL, "--name", "nightly-pool"],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        done = _trigger(home, env, "nightly-pool")
    finally:
        kill_tree(serve, signal.SIGTERM)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state, _, payload = done.stdout.partition("\n")
    assert state.endswith(": Completed"), done.stdout
    result = json.loads(payload)
    cells = {c["run_key"]: c for c in result["cells"]}
    assert set(cells) == {"dcgan", "dcgan-unbalanced"} and result["ok"]
    assert {c["worker"] for c in cells.values()} <= {"machine-a", "machine-b"}
    assert result["upstream"]["worker"] in {"machine-a", "machine-b"}
    assert not list((home / "runs").glob("*/checkpoints/*")), "the serving clone trained nothing"
    nightly = result["grid"]
    assert nightly.startswith("nightly-")
    fids = dict(_sql(cluster, "SELECT k.value, m.value FROM latest_metrics m "
                     "JOIN tags k ON k.run_uuid = m.run_uuid AND k.key = 'ugan.run_key' "
                     "JOIN tags s ON s.run_uuid = m.run_uuid AND s.key = 'ugan.stage' "
                     "AND s.value = 'evaluate' JOIN tags p ON p.run_uuid = m.run_uuid "
                     "AND p.key = 'ugan.pipeline_id' AND p.value = %s WHERE m.key = 'fid'",
                     nightly))  # fmt: skip
    assert set(fids) == set(cells)
    assert result["champion"]["candidate"]["run_key"] == min(fids, key=fids.get)


@pytest.mark.slow
def test_a_worker_killed_mid_cell_loses_no_cell(grid):
    cluster, seed, _, _ = grid
    started = time.monotonic()
    submitter = cluster.clone("submitter")
    env = cluster.env
    sh(["git", "checkout", "-q", "origin/ugan/grids/g1"], submitter, env)  # shared stages pushed
    (submitter / "profiles/kill.yaml").write_text(KILL_PROFILE)  # a profile is read locally
    log = open(cluster.base / "g2.log", "w")
    grid2 = subprocess.Popen(
        [str(BIN / "ugan"), "cluster", "grid", "kill", "--pool", POOL, "--name", "g2",
         "--lost-after", "45", "--json", str(cluster.base / "g2.json")],
        cwd=submitter, env=env | {"PREFECT_HOME": str(cluster.base / "submitter-prefect")},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        marker = cluster.base / "machine-a/slots/slot-0/.ugan/cell.json"

        def machine_a_cell():
            try:
                cell = json.loads(marker.read_text())
            except (OSError, ValueError):
                return None
            return cell if cell["grid"] == "g2" and cell["cell"] != "upstream" else None

        cell = _wait(machine_a_cell, 400, "machine-a starts a cell of g2", grid2)["cell"]
        # Rendezvous: machine-a's trainer of that cell is logging to the server right now.
        training = RUNS_OF_GRID + " WHERE r.status = 'RUNNING' AND s.value = 'train_gan' " \
            "AND k.value = %s"  # fmt: skip
        _wait(lambda: _sql(cluster, training, "g2", cell), 200, f"train_gan@{cell} runs", grid2)
        kill_tree(cluster.procs["machine-a"])  # the machine is gone, its processes with it
        killed_at = time.monotonic()
        assert grid2.wait(timeout=600) == 0, (cluster.base / "g2.log").read_text()[-3000:]
    finally:
        kill_tree(grid2)
    result = json.loads((cluster.base / "g2.json").read_text())
    cells = {c["run_key"]: c for c in result["cells"]}
    assert {c["state"] for c in cells.values()} == {"Completed"}, result
    # Marked Crashed by the server's lost-machine automation, sent again, run by machine-b.
    assert cells[cell]["worker"] == "machine-b" and cells[cell]["submissions"] == 2, cells[cell]
    statuses = [status for _, status, *_ in _sql(cluster, training.split(" WHERE")[0]
                + " WHERE s.value = 'train_gan' AND k.value = %s", "g2", cell)]  # fmt: skip
    assert sorted(statuses) == ["FINISHED", "KILLED"], "killed mid-cell, then run again"
    print(f"kill test: {time.monotonic() - started:.0f} s, the grid finished "
          f"{time.monotonic() - killed_at:.0f} s after the kill")  # fmt: skip


def test_a_cluster_grid_without_a_tracking_server_says_what_to_start(monkeypatch, capsys):
    from ugan.pipeline.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///local.db")
    assert main(["cluster", "grid", "smoke", "--pool", "p"]) == 2
    assert "MLFLOW_TRACKING_URI must name the shared tracking server" in capsys.readouterr().err


def test_services_take_the_database_password_from_env_or_a_private_file(tmp_path, monkeypatch):
    from ugan.pipeline.services import PASSWORD_ENV, Services

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    services = Services(tmp_path / "home", host="10.1.2.3", pg_port=6543)
    secret = services.password()
    assert (tmp_path / "home/db-password").stat().st_mode & 0o777 == 0o600
    assert services.password() == secret  # stable across calls
    assert services.database_url("mlflow") == f"postgresql://ugan:{secret}@10.1.2.3:6543/mlflow"
    assert services.env() == {
        "MLFLOW_TRACKING_URI": "http://10.1.2.3:5000",
        "PREFECT_API_URL": "http://10.1.2.3:4200/api",
    }
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert "from-env" in services.database_url("prefect")
