"""A 4-cell grid (tests/cluster_harness.py: 2 seeds × {random, vae}, 10 GAN steps) sent to a
Prefect work pool with 1 worker, then with 2 workers, on real services (PostgreSQL, MLflow
server, Prefect server on loopback; a bare git remote and a DVC remote in a temporary folder).

Prints the wall time of the cell phase (first cell submitted → last cell finished) for each,
their ratio, and where a cell's time goes: queueing (submitted → its flow process runs), the
distribution overhead (flow process start, checkout + `dvc pull` of the shared stages,
`dvc exp push`, reporting) against `dvc exp run` of its two stages, and, inside that, the time
the stages' MLflow runs were open (training / evaluation proper, after each Python start).

The first grid also trains the shared stages (not counted in the cell phase); the second is
based on its commit, so it pulls them like every cell does.

    python benchmarks/cluster.py [--json results/cluster.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster_harness import POOL, Cluster, sh  # noqa: E402


def _phase(cluster: Cluster, result: dict) -> dict:
    """Cell-phase wall time and per-cell components, from the Prefect and MLflow servers."""
    import mlflow
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(c["flow_run"]) for c in result["cells"]]
    tracking = mlflow.MlflowClient(cluster.services.mlflow_uri)
    experiment = tracking.get_experiment_by_name("ugan").experiment_id
    stage_seconds = {}
    for run in tracking.search_runs([experiment], f"tags.`ugan.pipeline_id` = '{result['grid']}'"):
        key = run.data.tags.get("ugan.run_key")
        if key and run.info.end_time and run.data.tags["ugan.stage"] in ("train_gan", "evaluate"):
            seconds = (run.info.end_time - run.info.start_time) / 1000
            stage_seconds[key] = stage_seconds.get(key, 0.0) + seconds
    cells = []
    for cell, run in zip(result["cells"], runs, strict=True):
        wall = (run.end_time - run.start_time).total_seconds()
        parts = cell["seconds"]
        cells.append(
            {
                "run_key": cell["run_key"],
                "worker": cell["worker"],
                "queued": (run.start_time - run.created).total_seconds(),
                "flow_wall": wall,
                "checkout_pull": parts["checkout_pull"],
                "exp_run": parts["run"],
                "push": parts["push"],
                "flow_other": wall - sum(parts.values()),
                "stage_runs_open": stage_seconds.get(cell["run_key"], float("nan")),
            }
        )
    start = min(r.created for r in runs)
    end = max(r.end_time for r in runs)
    return {"wall": (end - start).total_seconds(), "cells": cells}


def _mean(cells: list[dict], key: str) -> float:
    return statistics.fmean(c[key] for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ugan-bench-cluster-"))
    cluster = Cluster(base)
    try:
        services_s = cluster.start_services()
        # This process reads both servers too (never a Prefect profile's default server).
        os.environ.update({k: cluster.env[k] for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")})
        seed = cluster.make_project()
        cluster.start_worker("machine-a")
        phases = {}
        out = base / "b1.json"
        cluster.ugan("cluster", "grid", "tiny", "--pool", POOL, "--name", "b1",
                     "--json", str(out), cwd=seed)  # fmt: skip
        first = json.loads(out.read_text())
        phases["1 worker"] = _phase(cluster, first)
        cluster.start_worker("machine-b")
        sh(["git", "fetch", "-q", "origin"], seed, cluster.env)
        sh(["git", "checkout", "-q", "origin/ugan/grids/b1"], seed, cluster.env)
        out = base / "b2.json"
        cluster.ugan("cluster", "grid", "tiny", "--pool", POOL, "--name", "b2",
                     "--json", str(out), cwd=seed)  # fmt: skip
        phases["2 workers"] = _phase(cluster, json.loads(out.read_text()))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    one, two = phases["1 worker"], phases["2 workers"]
    cells = one["cells"] + two["cells"]
    overhead = {k: _mean(cells, k) for k in ("checkout_pull", "push", "flow_other")}
    report = {
        "services_start_s": round(services_s, 1),
        "upstream_s": first["upstream"]["seconds"],
        "cell_phase_s": {name: round(p["wall"], 1) for name, p in phases.items()},
        "ratio_1_over_2": round(one["wall"] / two["wall"], 2),
        "per_cell_mean_s": {
            "queued_1_worker": round(_mean(one["cells"], "queued"), 1),
            "queued_2_workers": round(_mean(two["cells"], "queued"), 1),
            **{k: round(v, 1) for k, v in overhead.items()},
            "distribution_overhead": round(sum(overhead.values()), 1),
            "exp_run": round(_mean(cells, "exp_run"), 1),
            "stage_runs_open": round(_mean(cells, "stage_runs_open"), 1),
        },
        "phases": phases,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "phases"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
