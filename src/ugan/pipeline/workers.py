"""`ugan services`, `ugan worker` and `ugan cluster`: a grid fanned out over a Prefect work pool.

    ugan services up --host 10.0.0.5                # PostgreSQL, MLflow server, Prefect server
    ugan worker --pool gpus --limit 4               # on each machine: a Prefect process worker
    ugan cluster grid paper-mnist --pool gpus       # the grid's cells as flow runs on the pool

`cluster grid` runs the grid's shared stages once (flow `ugan-grid-upstream`), then one flow run
of `ugan-grid-cell` per run of the grid, waits for them, and crowns the champion from the scores
the evaluate stages logged to the tracking server. A flow run whose machine is lost stops
sending heartbeats; an automation on the Prefect server (Prefect's zombie-run recipe) marks it
Crashed after `--lost-after` seconds, and `cluster grid` submits that cell again as a new flow
run, which a live worker takes. (A Failed run is retried in its own process: flow `retries`.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from ugan.core.errors import UserError
from ugan.pipeline import processes
from ugan.pipeline.services import Services
from ugan.tracking.pipeline_run import PARENT_ENV, PIPELINE_ENV

ZOMBIE_AUTOMATION = "ugan: flow run without heartbeat (machine lost)"
HEARTBEAT_SECONDS = 30  # Prefect's minimum flow-run heartbeat interval
LOST_AFTER = 90  # seconds without a heartbeat before a run counts as lost
# `ugan` subcommands of this module; cli.py adds them to its registry (same shape as its own).
CLUSTER_COMMANDS: dict[str, tuple] = {}


def command(name: str, help: str, arguments):
    def decorate(fn):
        CLUSTER_COMMANDS[name] = (help, fn, arguments)
        return fn

    return decorate


def _services_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument("--home", default=".ugan/services", help="state, data, logs")
    parser.add_argument("--host", default="127.0.0.1", help="address every service binds to")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--pg-data", default=None, help="PostgreSQL data folder")


@command("services", "start / stop PostgreSQL, the MLflow server, the Prefect server",
         _services_arguments)  # fmt: skip
def services(args: argparse.Namespace) -> int:
    svc = Services(args.home, args.host, args.pg_port, args.mlflow_port, args.prefect_port,
                   args.pg_data)  # fmt: skip
    if args.action == "up":
        for key, value in svc.up().items():
            print(f"export {key}={value}")
    elif args.action == "down":
        print(f"stopped: {', '.join(svc.down()) or 'nothing was running'}")
    elif args.action == "status":
        states = svc.status()
        for name, ok in states.items():
            print(f"{name:9s} {'up' if ok else 'down'}")
        return 0 if all(states.values()) else 1
    else:
        for key, value in svc.env().items():
            print(f"export {key}={value}")
    return 0


# -- the pool, its deployments, the lost-machine automation -----------------------------------


def require_servers() -> str:
    from ugan.pipeline.flows import require_server

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise UserError(
            "MLFLOW_TRACKING_URI must name the shared tracking server (http://host:port; "
            "`ugan services up` prints it): every machine logs there"
        )
    return require_server()


def ensure_pool(pool: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass


def deploy(pool: str, lost_after: int = LOST_AFTER) -> None:
    """The pool, the two grid flows deployed on it (entrypoint: ugan's module, installed on
    every worker), and the automation that fails runs whose machine went silent."""
    from prefect.deployments.runner import EntrypointType

    from ugan.pipeline.cluster import grid_cell, grid_upstream

    ensure_pool(pool)
    for flow in (grid_upstream, grid_cell):
        flow.to_deployment(
            name=pool, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH
        ).apply()
    lost_machine_automation(lost_after)


def lost_machine_automation(within: int) -> None:
    """Prefect's zombie-run recipe: a grid flow run with no heartbeat (and no final state) for
    `within` seconds is marked Crashed. (Proposing Failed instead makes the server schedule an
    *in-process* retry, AwaitingRetry, that no worker picks up: the process is gone.)"""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    from ugan.pipeline.cluster import CELL_FLOW, UPSTREAM_FLOW

    with_heartbeat = {"prefect.flow-run.heartbeat"}
    states = ("Completed", "Failed", "Cancelled", "Crashed", "AwaitingRetry", "Cancelling")
    ends = {f"prefect.flow-run.{s}" for s in states}
    with_heartbeat |= ends
    for existing in _automations(ZOMBIE_AUTOMATION):
        existing.delete()
    Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            posture=Posture.Proactive,
            after={"prefect.flow-run.heartbeat"},
            expect=with_heartbeat,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "flow",
                "prefect.resource.name": [CELL_FLOW, UPSTREAM_FLOW],
            },  # fmt: skip
            for_each={"prefect.resource.id"},
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within} s: its worker's machine is gone",
            )
        ],
    ).create()


def _automations(name: str) -> list:
    from prefect.automations import Automation

    try:
        found = Automation.read(name=name)
    except (ValueError, LookupError):
        return []
    return found if isinstance(found, list) else [found] if found else []


# -- ugan worker ------------------------------------------------------------------------------


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", required=True, help="the Prefect work pool")
    parser.add_argument("--limit", type=int, default=1,
                        help="flow runs at once on this machine (its GPUs); default 1")  # fmt: skip
    parser.add_argument("--workdir", default=".ugan/worker",
                        help="where the worker keeps its clones (one per slot)")  # fmt: skip
    parser.add_argument("--name", default=None, help="worker name (default: host-pid)")
    parser.add_argument("--gpus", action="store_true", help="slot i sees only GPU i")


@command("worker", "run a Prefect process worker for a pool on this machine (blocks)",
         _worker_arguments)  # fmt: skip
def worker(args: argparse.Namespace) -> int:
    from ugan.pipeline.cluster import SLOT_GPUS_ENV, SLOTS_ENV, WORKDIR_ENV

    require_servers()
    ensure_pool(args.pool)
    name = args.name or f"{os.uname().nodename}-{os.getpid()}"
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env |= {WORKDIR_ENV: str(workdir), SLOTS_ENV: str(args.limit), "UGAN_WORKER_NAME": name}
    env |= {SLOT_GPUS_ENV: "1"} if args.gpus else {}
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    prefect = str(Path(sys.executable).with_name("prefect"))
    cmd = [prefect, "worker", "start", "--pool", args.pool, "--type", "process",
           "--name", name, "--limit", str(args.limit)]  # fmt: skip
    print(f"worker {name} on pool {args.pool}: {args.limit} slot(s) in {workdir}", flush=True)
    return processes.call(cmd, env=env, grace=30.0)


# -- ugan cluster grid ------------------------------------------------------------------------


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["grid", "deploy"])
    parser.add_argument("profile", nargs="?", help="a profile in profiles/ (for grid)")
    parser.add_argument("--pool", required=True, help="the Prefect work pool")
    parser.add_argument("--remote", default="origin", help="the shared git remote")
    parser.add_argument("--name", default=None, help="grid name (default: profile-time)")
    parser.add_argument("--model-name", default="ugan-generator")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--lost-after", type=int, default=LOST_AFTER,
                        help="seconds without heartbeat before a run is lost")  # fmt: skip


@command("cluster", "send a profile's grid to a Prefect work pool (`cluster grid P --pool X`)",
         _cluster_arguments)  # fmt: skip
def cluster(args: argparse.Namespace) -> int:
    from ugan.pipeline.grids import submit_grid

    require_servers()
    deploy(args.pool, args.lost_after)
    if args.action == "deploy":
        print(f"deployed the grid flows on pool {args.pool}")
        return 0
    if not args.profile:
        raise UserError("cluster grid: name a profile, e.g. `ugan cluster grid smoke --pool X`")
    name = args.name or f"{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    os.environ.setdefault(PIPELINE_ENV, name)
    os.environ.pop(PARENT_ENV, None)
    result = submit_grid(
        Path.cwd(), args.profile, args.pool, name, args.remote, args.model_name,
        params_file=Path(args.params),
    )  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    for cell in result["cells"]:
        print(f"{cell['run_key']:28s} {cell['state']:10s} {cell.get('worker', '-')}"
              f"  FID {cell.get('fid', float('nan')):.3f}")  # fmt: skip
    if result.get("champion"):
        print(result["champion"]["summary"])
    print(f"grid {name}: dvc exp pull {args.remote} && dvc exp show --rev "
          f"{result['commit'][:12]}")  # fmt: skip
    return 0 if result["ok"] else 1
