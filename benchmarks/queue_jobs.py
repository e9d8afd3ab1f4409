"""Benchmark — queued experiments: 2 DVC experiments (each `train_gan@dcgan` + `evaluate@dcgan`
of one run, gan.seed 1 and 2) queued and run on two workers, `UGAN_JOBS=2 dvc queue start -j 2`
(each stage's torch gets cores / 2 threads, README "Threads"), against the same 2 run one after
the other with `dvc exp run` in the same run; and, to show what the thread split buys, the
queued pair oversubscribed (`UGAN_THREADS` = every core, for each worker). Goal: queued ÷ one
after the other ≤ 0.7 on 2 cores.

    python benchmarks/queue_jobs.py [--steps 250] [--no-oversubscribed]

A tiny project (a copy of src/, stages/, dvc.yaml, params.yaml, as tests/test_queue.py makes)
reproduces the shared upstream (prepare, train_classifier, init_random, pretrain_dae) once and is
committed; each way then runs in its own copy of that project (git repo, DVC cache and all), so
the three do identical work from the same base and share no results (the run cache, the resume
store, the queue). Each way's time runs from its first `dvc` command until both experiments'
results are in (for the queue: both experiment refs written, found by `git for-each-ref` every
0.2 s, so no polling `dvc` process competes for the cores), queueing and worker start included.
OMP_NUM_THREADS, UGAN_THREADS and UGAN_JOBS are removed from the stages' environment, so each
stage sizes its threads as `configure_threads` does for a user.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
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

SEEDS = (1, 2)  # gan.seed of the two experiments, the same in every way
UPSTREAM = ["train_classifier", "init_random", "pretrain_dae"]  # prepare comes with them
TARGETS = ["evaluate"]  # each experiment: train_gan@dcgan and evaluate@dcgan


def sizes(args) -> dict:
    return {
        "classifier": {"steps": 60, "min_accuracy": 0.0},
        "model": {"latent_dim": args.latent_dim, "base_channels": args.base_channels},
        "dae": {"steps": 10, "sample_every": 10},  # no rfgan run: the stage writes a marker
        "gan": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "checkpoint_every": max(1, args.steps // args.checkpoints),
            "num_sample_images": 16,
        },
        "eval": {"num_samples": args.eval_samples, "kid_subset_size": args.eval_samples // 2},
        "tracking": {"log_models": False},
        "device": "cpu",
        "runs": {"dcgan": {"init": "random"}},
    }


def make_project(path: Path, args) -> dict:
    """The committed base: the tiny project with its shared upstream reproduced."""
    tiny = sizes(args)
    params = merge(repo_params(), {k: v for k, v in tiny.items() if k != "runs"})
    env = init_project(path, params | {"runs": tiny["runs"]}, own_store=False)
    _, seconds = sh(["dvc", "repro", *UPSTREAM], path, env)
    print(f"shared upstream reproduced once: {seconds:.0f} s", flush=True)
    commit_all(path, env, "benchmark base")
    return env


def copy_project(base: Path, path: Path, env: dict) -> dict:
    shutil.copytree(base, path, symlinks=True)
    return env | {"PYTHONPATH": str(path / "src")}


def trained(log: str, what: str) -> None:
    """Fail unless the log shows both stages of the experiment ran (no cached result)."""
    for stage in ("train_gan@dcgan", "evaluate@dcgan"):
        if f"Running stage '{stage}'" not in log:
            raise RuntimeError(f"{what}: {stage} did not run:\n{log[-3000:]}")


def stage_seconds(project: Path) -> list[float]:
    """Seconds of each train_gan stage run in the project's MLflow store (start to end)."""
    with sqlite3.connect(project / "mlflow.db") as db:
        rows = db.execute(
            "SELECT r.start_time, r.end_time FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid"
            " WHERE t.key = 'ugan.stage' AND t.value = 'train_gan' AND r.end_time IS NOT NULL"
        ).fetchall()
    return sorted((end - start) / 1000 for start, end in rows)


def one_after_the_other(project: Path, env: dict) -> dict:
    start = time.perf_counter()
    for seed in SEEDS:
        command = ["dvc", "exp", "run", "-n", f"seq-s{seed}", "-S", f"gan.seed={seed}", *TARGETS]
        log, seconds = sh(command, project, env)
        trained(log, f"dvc exp run seed {seed}")
        print(f"  dvc exp run (gan.seed={seed}): {seconds:.1f} s", flush=True)
    return {"seconds": time.perf_counter() - start, "train_gan_s": stage_seconds(project)}


def project_processes(project: Path) -> list[int]:
    """Pids of the processes working in the project or its queue's temporary workspaces."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == str(project) or cwd.startswith(f"{project}/"):
                pids.append(int(entry.name))
    return pids


def queued(project: Path, env: dict, jobs: int, label: str) -> dict:
    """Queue the two experiments, `dvc queue start -j jobs`, wait until both refs are written."""
    names = [f"{label}-s{seed}" for seed in SEEDS]
    start = time.perf_counter()
    for name, seed in zip(names, SEEDS, strict=True):
        command = ["dvc", "exp", "run", "--queue", "-n", name, "-S", f"gan.seed={seed}"]
        sh([*command, *TARGETS], project, env)
    queueing = time.perf_counter() - start
    sh(["dvc", "queue", "start", "-j", str(jobs)], project, env)
    done: dict[str, float] = {}
    next_status = time.perf_counter() + 30
    while len(done) < len(names):
        refs = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in names:
            if name not in done and any(ref.endswith(f"/{name}") for ref in refs):
                done[name] = time.perf_counter() - start
                print(f"  {name} done at {done[name]:.1f} s", flush=True)
        if time.perf_counter() > next_status:  # a failed experiment writes no ref
            status, _ = sh(["dvc", "queue", "status"], project, env)
            if "Failed" in status:
                raise RuntimeError(f"{label}: an experiment failed:\n{status}")
            next_status = time.perf_counter() + 30
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    for _ in range(60):  # the workers record Success just after the refs
        status, _ = sh(["dvc", "queue", "status"], project, env)
        if all(
            any(name in line and line.split()[-1] == "Success" for line in status.splitlines())
            for name in names
        ):
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"{label}: not both Success:\n{status}")
    for name in names:
        log, _ = sh(["dvc", "queue", "logs", name], project, env)
        trained(log, name)
    return {
        "seconds": seconds,
        "queueing_s": queueing,
        "finished_s": [done[name] for name in names],
        "train_gan_s": stage_seconds(project),
    }


def stop_queue(project: Path, env: dict) -> None:
    """Stop the project's queue workers and wait until every process working there has ended."""
    subprocess.run(["dvc", "queue", "stop"], cwd=project, env=env, capture_output=True)
    deadline = time.time() + 60
    while project_processes(project) and time.time() < deadline:
        time.sleep(0.5)
    for pid in project_processes(project):  # started by this benchmark, still there
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="GAN steps per experiment")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--base-channels", type=int, default=64)
    parser.add_argument("--checkpoints", type=int, default=2, help="evaluated per experiment")
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument(
        "--no-oversubscribed",
        dest="oversubscribed",
        action="store_false",
        help="skip the queued pair with every core's threads per worker",
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    load_at_start = round(os.getloadavg()[0], 2)  # machine() gives the load at the end
    ways: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ugan-queue-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = make_project(tmp / "base", args)
        try:
            print("one after the other: dvc exp run × 2", flush=True)
            project = tmp / "sequential"
            ways["sequential"] = one_after_the_other(
                project, copy_project(tmp / "base", project, env)
            )
            ways["sequential"]["threads_per_stage"] = cores

            print(
                f"queued: UGAN_JOBS=2 dvc queue start -j 2 ({max(1, cores // 2)} threads each)",
                flush=True,
            )
            project = tmp / "queued"
            queue_env = copy_project(tmp / "base", project, env) | {"UGAN_JOBS": "2"}
            ways["queued"] = queued(project, queue_env, 2, "split")
            ways["queued"]["threads_per_stage"] = max(1, cores // 2)
            stop_queue(project, queue_env)

            if args.oversubscribed:
                print(
                    f"queued, oversubscribed: UGAN_THREADS={cores} dvc queue start -j 2", flush=True
                )
                project = tmp / "oversubscribed"
                over_env = copy_project(tmp / "base", project, env) | {"UGAN_THREADS": str(cores)}
                ways["oversubscribed"] = queued(project, over_env, 2, "over")
                ways["oversubscribed"]["threads_per_stage"] = cores
                stop_queue(project, over_env)
        finally:
            for name in ("queued", "oversubscribed"):
                if (tmp / name).is_dir():
                    stop_queue(tmp / name, env)

    reference = ways["sequential"]["seconds"]
    for figures in ways.values():
        figures["ratio"] = figures["seconds"] / reference
    labels = {
        "sequential": "one after the other: `dvc exp run` × 2 (reference)",
        "queued": "`UGAN_JOBS=2 dvc queue start -j 2`",
        "oversubscribed": f"`UGAN_THREADS={cores} dvc queue start -j 2` (oversubscribed)",
    }
    rows = [
        [
            labels[name],
            figures["threads_per_stage"],
            f"{figures['seconds']:.1f}",
            " / ".join(f"{s:.1f}" for s in figures["train_gan_s"]),
            f"{figures['ratio']:.2f}",
        ]
        for name, figures in ways.items()
    ]
    print(
        f"\n2 experiments (train_gan + evaluate of one run each; {args.steps} GAN steps, batch "
        f"{args.batch_size}, base_channels {args.base_channels}) on {cores} cores\n"
    )
    print(
        table(
            [
                "how",
                "torch threads / stage",
                "wall s",
                "train_gan s each (MLflow)",
                "÷ one after the other",
            ],
            rows,
        )
    )
    ratio = ways["queued"]["ratio"]
    verdict = "met" if ratio <= 0.7 else "NOT met"
    print(f"\nqueued ÷ one after the other: {ratio:.2f} (goal ≤ 0.7: {verdict})")
    figures = {
        "ways": ways,
        "ratio_queued": ratio,
        "goal": 0.7,
        "sizes": sizes(args),
        "cores": cores,
        "load_average_1min_at_start": load_at_start,
    }
    report(args, "queue_jobs", machine("cpu"), figures)


if __name__ == "__main__":
    main()
