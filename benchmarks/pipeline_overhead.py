"""Benchmark 2 — pipeline overhead: the whole pipeline on tiny params through `dvc repro`
(optionally through the Prefect flow) against the same stage functions called in one Python
process; a no-op `dvc repro`; and the cost of MLflow logging per training step.

    python benchmarks/pipeline_overhead.py [--prefect] [--teardown]

--teardown also times `dvc repro` with UGAN_FAST_EXIT=0 (every stage process ends through the
interpreter's full teardown of its modules, as before `ugan.core.runtime.exit_now`).

Each project is a fresh copy of src/, stages/, dvc.yaml and params.yaml (tiny sizes) in a
temporary git repo, as in tests/test_pipeline.py.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    arguments,
    commit_all,
    init_project,
    machine,
    merge,
    repo_params,
    report,
    sh,
    table,
)

TINY = {
    "classifier": {"steps": 60, "min_accuracy": 0.0},
    "model": {"latent_dim": 16, "base_channels": 8},
    "vae": {"steps": 20, "sample_every": 10},
    "dae": {"steps": 20, "sample_every": 10},
    "gan": {"steps": 12, "checkpoint_every": 4, "batch_size": 32, "num_sample_images": 16},
    "eval": {"num_samples": 200, "kid_subset_size": 100},
    "tracking": {"log_models": True},
    "device": "cpu",
}
# Runs every stage function of the pipeline, in DVC's order, in this one interpreter, with
# torch's threads sized as every stage sizes them (UGAN_THREADS / UGAN_JOBS honoured).
IN_PROCESS = r"""
import importlib.util, json, sys, time
from ugan.core.runtime import configure_threads
configure_threads()
start = time.perf_counter()
modules = {}
for script, *args in json.loads(sys.argv[1]):
    if script not in modules:
        spec = importlib.util.spec_from_file_location(f"stage_{len(modules)}", script)
        modules[script] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[script])
    modules[script].main.__wrapped__(*args)  # the stage function, without its exit handling
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def make_project(path: Path) -> dict:
    env = init_project(path, merge(repo_params(), TINY))
    commit_all(path, env, "bench")
    return env


def stage_commands(dvc_output: str) -> list[list[str]]:
    """[script, *args] of every stage `dvc repro` ran, in its order; a foreach stage's key (which
    DVC hands the script in DVC_STAGE) becomes its argument."""
    commands, stage = [], ""
    for line in dvc_output.splitlines():
        if running := re.match(r"Running stage '([^']+)'", line):
            stage = running.group(1)
        elif line.startswith("> "):
            key = stage.partition("@")[2]
            commands.append(line[2:].split()[1:] + ([key] if key else []))
    return commands


def mlflow_logging(tmp: Path, steps: int) -> dict:
    """Seconds per training step of logging 4 losses: ugan's buffered StageRun.log_metrics
    (sent with log_batch every 500 values) vs one MlflowClient.log_metric call per value."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'logging.db'}"
    from mlflow.tracking import MlflowClient

    from ugan.tracking.stage_run import StageRun

    losses = {"d_loss": 0.7, "g_loss": 0.69, "d_real": 0.1, "d_fake": -0.1}
    with StageRun("bench", {}, run_key="buffered", log_models=False) as run:
        assert run.run_id  # connected (in the background) before timing: logging, not the store
        start = time.perf_counter()
        for step in range(1, steps + 1):
            run.log_metrics(losses, step=step)
        run.flush()
        buffered = (time.perf_counter() - start) / steps
    with StageRun("bench", {}, run_key="direct", log_models=False) as run:
        client, direct_steps = MlflowClient(), max(20, steps // 20)
        start = time.perf_counter()
        for step in range(1, direct_steps + 1):
            for key, value in losses.items():
                client.log_metric(run.run_id, key, value, step=step)
        direct = (time.perf_counter() - start) / direct_steps
    return {"buffered_s_per_step": buffered, "direct_s_per_step": direct}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--prefect", action="store_true", help="also time the Prefect flow")
    parser.add_argument(
        "--teardown", action="store_true", help="also time dvc repro with UGAN_FAST_EXIT=0"
    )
    parser.add_argument("--noop-repeat", type=int, default=3)
    parser.add_argument("--log-steps", type=int, default=2000)
    args = parser.parse_args()

    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = make_project(tmp / "dvc")
        output, figures["dvc_repro_s"] = sh(["dvc", "repro"], tmp / "dvc", env)
        commands = stage_commands(output)
        figures["stages"] = len(commands)
        print(f"dvc repro: {len(commands)} stages in {figures['dvc_repro_s']:.1f} s", flush=True)
        figures["noop_dvc_repro_s"] = statistics.median(
            sh(["dvc", "repro"], tmp / "dvc", env)[1] for _ in range(args.noop_repeat)
        )
        print(f"no-op dvc repro: {figures['noop_dvc_repro_s']:.2f} s", flush=True)

        if args.teardown:
            env = make_project(tmp / "teardown") | {"UGAN_FAST_EXIT": "0"}
            figures["dvc_repro_full_teardown_s"] = sh(["dvc", "repro"], tmp / "teardown", env)[1]
            print(f"dvc repro, UGAN_FAST_EXIT=0: {figures['dvc_repro_full_teardown_s']:.1f} s")

        env = make_project(tmp / "inprocess")
        output, total = sh(
            [sys.executable, "-c", IN_PROCESS, json.dumps(commands)], tmp / "inprocess", env
        )
        figures["in_process_s"] = total
        done = [line for line in output.splitlines() if line.startswith('{"seconds"')]
        figures["in_process_stage_work_s"] = json.loads(done[-1])["seconds"]
        print(f"in one process: {total:.1f} s", flush=True)

        if args.prefect:
            env = make_project(tmp / "prefect")
            env |= {
                "PREFECT_HOME": str(tmp / "prefect-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            }
            flow = [
                sys.executable,
                "-m",
                "ugan.pipeline.cli",
                "flow",
                "--project",
                ".",
                "--no-compare",
            ]
            output, figures["prefect_flow_s"] = sh(flow, tmp / "prefect", env)
            ran = re.findall(r'"ran": \[([^\]]*)\]', output)
            print(f"Prefect flow: {figures['prefect_flow_s']:.1f} s {ran[:1]}", flush=True)

        figures["mlflow"] = mlflow_logging(tmp, args.log_steps)

    n, reference = figures["stages"], figures["in_process_s"]
    # (how, key in figures): each against the one-process reference, when this run measured it
    ways = (
        ("dvc repro", "dvc_repro_s"),
        ("dvc repro, UGAN_FAST_EXIT=0 (full teardown)", "dvc_repro_full_teardown_s"),
        ("Prefect flow (a dvc repro per stage)", "prefect_flow_s"),
    )
    rows = [["in one process (reference)", f"{reference:.1f}", "1.00", ""]]
    rows += [
        [how, f"{figures[key]:.1f}", f"{figures[key] / reference:.2f}",
         f"{(figures[key] - reference) / n:.1f}"]
        for how, key in ways
        if key in figures
    ]  # fmt: skip
    rows.append(["no-op dvc repro", f"{figures['noop_dvc_repro_s']:.2f}", "", ""])
    print(f"\nPipeline overhead, tiny params, {n} stages\n")
    print(table(["how", "seconds", "× in one process", "overhead s / stage"], rows))
    logging = figures["mlflow"]
    print(f"\nMLflow logging of 4 losses per step, sqlite store ({args.log_steps} steps)\n")
    print(
        table(
            ["how", "µs / step", "× ugan"],
            [
                [
                    "ugan StageRun.log_metrics (buffered)",
                    f"{logging['buffered_s_per_step'] * 1e6:.0f}",
                    "1.00",
                ],
                [
                    "MlflowClient.log_metric per value",
                    f"{logging['direct_s_per_step'] * 1e6:.0f}",
                    f"{logging['direct_s_per_step'] / logging['buffered_s_per_step']:.0f}",
                ],
            ],
        )
    )
    report(args, "pipeline_overhead", machine("cpu"), figures)


if __name__ == "__main__":
    main()
