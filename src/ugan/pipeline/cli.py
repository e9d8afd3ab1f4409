"""`ugan …`: the commands a user types. Each subcommand is one small function in a registry."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Callable

from ugan.config.load import load_params
from ugan.core.errors import UserError
from ugan.core.io import atomic_write_text
from ugan.core.runtime import JOBS_ENV
from ugan.pipeline import dvc_queue, processes, side_by_side
from ugan.pipeline.flow_commands import FLOW_COMMANDS, model_name_argument
from ugan.pipeline.reproduce import REPRODUCE_COMMANDS
from ugan.pipeline.side_by_side import jobs_count
from ugan.pipeline.workers import CLUSTER_COMMANDS
from ugan.tracking.pipeline_run import (
    PARENT_ENV,
    PIPELINE_ENV,
    close_pipeline_run,
    open_pipeline_run,
)
from ugan.tracking.store import tracking_uri

COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int], Callable]] = {}


def command(
    name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
):
    def decorate(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, fn, arguments)
        return fn

    return decorate


@command("validate", "check params.yaml and print the resolved runs")
def validate(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    for key in params.runs:
        run = params.run(key)
        print(f"{key:24s} init={run.init:6s} loss={run.gan.loss:6s} steps={run.gan.steps}")
    print(f"{args.params}: ok")
    return 0


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    parser.add_argument(
        "-j",
        "--jobs",
        type=jobs_count,
        help="runs trained at once, torch's threads split between them (default: one per run, "
        "at most one per core, on a CPU; 1 where a GPU is visible or with targets)",
    )
    model_name_argument(parser)


@command(
    "run",
    "validate params, `dvc repro` the pipeline (its runs side by side on a CPU: --jobs) under "
    "one MLflow pipeline id, then register the best generator and move alias champion to it if "
    "it beats the champion",
    _run_arguments,
)
def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)  # fail before DVC starts anything
    env = dict(os.environ)
    env.setdefault(PIPELINE_ENV, f"run-{uuid.uuid4().hex[:12]}")
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    print(f"pipeline id {env[PIPELINE_ENV]}; tracking at {env['MLFLOW_TRACKING_URI']}")
    parent = None
    if not env.get(PARENT_ENV):
        parent = open_pipeline_run(
            env[PIPELINE_ENV], params.tracking.experiment, env["MLFLOW_TRACKING_URI"]
        )
        env |= {PARENT_ENV: parent} if parent else {}
    status = "FAILED"  # also when the pipeline is interrupted or cannot start
    try:
        if args.targets:
            code = processes.call(["dvc", "repro", *args.targets], env=env)
        else:
            runs = list(params.runs)
            jobs = args.jobs or side_by_side.default_jobs(params.device, len(runs))
            code = side_by_side.reproduce(runs, jobs, env)
        if code == 0:  # every stage succeeded
            code = _crown_champion(args, params, env["MLFLOW_TRACKING_URI"], env.get(PARENT_ENV))
        status = "FINISHED" if code == 0 else "FAILED"
    finally:
        if parent:
            close_pipeline_run(parent, status, env["MLFLOW_TRACKING_URI"])
    return code


def _crown_champion(args: argparse.Namespace, params, uri: str, parent: str | None) -> int:
    """After a successful `ugan run`: the nightly flow's champion check, by the same code.
    Skipped, with a note, for a part of the pipeline or generators not logged as models."""
    from ugan.pipeline import champion

    if args.targets:
        print(f"champion: not checked (targets {' '.join(args.targets)}: a part of the pipeline)")
    elif not params.tracking.log_models:
        print("champion: not checked (tracking.log_models is false: no generator to register)")
    else:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one file
        try:
            decision, url = champion.check(
                uri, args.model_name, os.getcwd(), list(params.runs), params.tracking.experiment,
                parent,
            )  # fmt: skip
        except champion.RegistryError as error:
            print(f"error: champion: {error}", file=sys.stderr)
            return 1
        print(f"champion: {decision.summary()}\nMLflow (after `make ui`): {url}")
    return 0


@command(
    "ui",
    "start the MLflow UI on 127.0.0.1 with the project's store",
    lambda p: p.add_argument("--port", type=int, default=5000),
)
def ui(args: argparse.Namespace) -> int:
    processes.require_free_port("127.0.0.1", args.port)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
        "--backend-store-uri",
        tracking_uri(),
    ]
    print(f"MLflow UI on http://127.0.0.1:{args.port}  (store {tracking_uri()})")
    return processes.call(cmd, env=env, grace=10.0)


@command("sync", "send tracking data spooled while the MLflow store was unreachable")
def sync(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ugan.tracking.spool import BrokenSpoolError, pending, replay
    from ugan.tracking.store import prepare_store

    uri = tracking_uri()
    prepare_store(uri)
    client = MlflowClient(uri)
    spools, sent = pending(), 0
    for spool in spools:  # one bad spool never stops the others
        try:
            print(f"{spool} → run {replay(spool, client)}")
            sent += 1
        except BrokenSpoolError as exc:
            print(f"skipped {spool}: {exc}; remove it once you no longer need it", file=sys.stderr)
        except Exception as exc:  # the store failed mid-way: the spool stays, a rerun resumes
            print(f"kept {spool}: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"{sent} of {len(spools)} spooled run(s) sent to {uri}")
    return 0 if sent == len(spools) else 1


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="a profile in profiles/, e.g. paper-mnist")
    parser.add_argument("--jobs", type=jobs_count, default=1, help="parallel DVC queue workers")
    parser.add_argument(
        "--queue-only", action="store_true", help="queue the experiment, do not start workers"
    )
    parser.add_argument(
        "--here",
        action="store_true",
        help="apply the profile to params.yaml and run `dvc exp run` in this workspace (no queue)",
    )


@command("grid", "run a named profile's grid of runs as a DVC experiment", _grid_arguments)
def grid(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import yaml

    from ugan.config.profiles import apply_profile, load_profile, render_params

    params_path = Path(args.params)
    original = params_path.read_text()
    profile = load_profile(args.profile)
    merged, params = apply_profile(yaml.safe_load(original), profile)  # validated before any work
    name = f"{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"profile {args.profile}: {len(params.runs)} runs → experiment {name}")
    env = dict(os.environ)
    env.setdefault(PIPELINE_ENV, name)
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # absolute: queue workers run elsewhere
    env.setdefault(JOBS_ENV, str(args.jobs))  # each stage sizes its torch threads by it
    text = render_params(original, merged)  # the user's comments stay
    if args.here:
        with processes.params_swapped(params_path, text):
            code = processes.call(["dvc", "exp", "run", "-n", name], env=env)
        atomic_write_text(params_path, text)  # not interrupted: params.yaml keeps the profile
        return code
    # The queued experiment snapshots the workspace, params.yaml included.
    with processes.params_swapped(params_path, text):
        code = processes.call(["dvc", "exp", "run", "--queue", "-n", name], env=env)
    if code or args.queue_only:
        return code
    code, _ = dvc_queue.start_and_wait(args.jobs, env)
    print(f"done. Results: dvc exp show; report: dvc exp apply {name} && open reports/report.md")
    return code


# How `ugan queue` cuts a grid into experiments: run entry → the experiment it belongs to.
QUEUE_SPLITS: dict[str, Callable[[str, dict], str]] = {
    "seed": lambda key, run: f"s{run['seed']}",  # ordinary and unbalanced side by side
    "run": lambda key, run: key,  # the most parallel
}


def _queue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="a profile in profiles/, e.g. paper-mnist")
    parser.add_argument("--jobs", "-j", type=jobs_count, default=2, help="parallel queue workers")
    parser.add_argument(
        "--split",
        choices=sorted(QUEUE_SPLITS),
        default="seed",
        help="one experiment per seed (default) or per run",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="queue and start the workers, then return"
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        default=[],
        help="stages each experiment reproduces, e.g. train_gan (default: the whole pipeline)",
    )


@command(
    "queue",
    "run a profile's grid as queued DVC experiments on parallel workers (dvc queue start -j)",
    _queue_arguments,
)
def queue(args: argparse.Namespace) -> int:
    """Each experiment is the grid's runs of one seed (or one run); shared stages come from
    DVC's cache. Stages in the workers' temporary workspaces log to this project's MLflow
    store: `tracking_uri()` reads the project root from DVC_ROOT, and each experiment is its
    own pipeline (DVC_EXP_NAME)."""
    import time
    from pathlib import Path

    import yaml

    from ugan.config.profiles import apply_profile, load_profile, render_params

    params_path = Path(args.params)
    original = params_path.read_text()
    merged, _ = apply_profile(yaml.safe_load(original), load_profile(args.profile))
    experiments: dict[str, dict] = {}
    for key, entry in merged["runs"].items():
        experiments.setdefault(QUEUE_SPLITS[args.split](key, entry), {})[key] = entry
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = {k: v for k, v in os.environ.items() if k != PIPELINE_ENV}
    env.setdefault(JOBS_ENV, str(args.jobs))  # each stage sizes its torch threads by it
    names = []
    for label, runs in experiments.items():  # each snapshots the workspace, params.yaml too
        name = f"{args.profile}-{label}-{stamp}"
        command = ["dvc", "exp", "run", "--queue", "-n", name, *args.targets]
        text = render_params(original, {**merged, "runs": runs})
        with processes.params_swapped(params_path, text):
            code = processes.call(command, env=env)
        if code:
            return code
        names.append(name)
    print(f"queued {len(names)} experiments; tracking at {tracking_uri()}")
    if args.no_wait:  # nobody keeps the live jobs count: each stage keeps cores / UGAN_JOBS
        return subprocess.call(["dvc", "queue", "start", "-j", str(args.jobs)], env=env)
    code, states = dvc_queue.start_and_wait(args.jobs, env, names)
    if code:
        return code
    for name in names:
        print(f"{name}: {states.get(name, 'unknown')}")
    return 0 if all(states.get(n) == "Success" for n in names) else 1


COMMANDS.update(FLOW_COMMANDS)  # flow, serve, trigger (pipeline/flow_commands.py)
COMMANDS.update(CLUSTER_COMMANDS)  # services, worker, cluster (pipeline/workers.py)
COMMANDS.update(REPRODUCE_COMMANDS)  # reproduce (pipeline/reproduce.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ugan", description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _fn, arguments) in COMMANDS.items():
        arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    processes.stop_on_sigterm()  # a CI cancel unwinds like Ctrl-C: children stop, files restored
    try:
        return COMMANDS[args.command][1](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
