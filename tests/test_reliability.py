"""Faults injected for real: SIGKILL, SIGTERM, truncated and unsafe files, NaN losses, an
unreachable tracking store, a held lock. See the reliability table in the README."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from ugan.config.load import parse_params
from ugan.core.errors import NonFiniteLossError, ResumeMismatchError, RunLockedError
from ugan.core.io import load_checkpoint, save_checkpoint
from ugan.core.paths import RunLayout
from ugan.nets.dcgan import Discriminator, Generator, init_weights
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.tracking.spool import pending
from ugan.tracking.stage_run import StageRun
from ugan.training.gan import train_gan
from ugan.training.resume import ResumeStore

TRAINER = Path(__file__).parent / "faults" / "tiny_trainer.py"
STATES = "resume/train_gan/dcgan/state_*.pt"


def _start(workdir: Path, steps: int, env, every: int = 10, pause_at: int = 0) -> subprocess.Popen:
    """The tiny trainer; with `pause_at` it waits at the start of that step (see `_paused`)."""
    argv = [str(workdir), str(steps), str(every), *([str(pause_at)] if pause_at else [])]
    return subprocess.Popen(
        [sys.executable, str(TRAINER), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _paused(workdir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """The rendezvous: return once the trainer waits at its `pause_at` step (it goes on when
    WORKDIR/go appears), so a signal lands at a known step whatever the machine's speed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (workdir / "paused").exists():
            return
        assert proc.poll() is None, f"trainer ended early: {proc.communicate()[1][-2000:]}"
        time.sleep(0.01)
    raise AssertionError("the trainer never reached its pause step")


def _stage_runs(client) -> list:
    """The stage runs of the experiment, without the pipeline parent runs."""
    runs = client.search_runs([client.get_experiment_by_name("ugan").experiment_id])
    return [r for r in runs if r.data.tags.get("ugan.stage") != "pipeline"]


def _final_weights(workdir: Path, step: int) -> dict:
    return load_generator(RunLayout(workdir / "out").checkpoint_path(step)).state_dict()


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, env):
    steps = 60
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _start(reference, steps, env).wait(timeout=300) == 0
    proc = _start(killed, steps, env, pause_at=13)  # states at step 10; step 13 in flight
    _paused(killed, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert [p.name for p in killed.glob(STATES)] == ["state_00000010.pt"]
    assert RunLayout(killed / "out").checkpoint_steps() == [10]
    rerun = _start(killed, steps, env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert "resuming dcgan from step 10" in err
    a, b = _final_weights(reference, steps), _final_weights(killed, steps)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from uninterrupted one"
    assert (killed / "out/losses.csv").read_text() == (reference / "out/losses.csv").read_text()


def test_sigterm_saves_state_marks_run_killed_and_exits_nonzero(tmp_path, env):
    # No periodic state (checkpoint_every 1000): the only state can be the one the stop saves.
    proc = _start(tmp_path, 100_000, env, every=1000, pause_at=7)
    _paused(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)  # lands while step 7 waits to start
    (tmp_path / "go").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    stopped = re.search(r"stopped at step (\d+); state saved for resume", err)
    assert stopped, err[-2000:]
    step = int(stopped[1])
    assert step == 7, "the step in flight finishes, no other starts"
    assert [p.name for p in tmp_path.glob(STATES)] == [f"state_{step:08d}.pt"]
    assert load_checkpoint(next(tmp_path.glob(STATES)))["step"] == step
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = _stage_runs(client)
    assert [r.info.status for r in runs] == ["KILLED"]

    rerun = _start(tmp_path, step + 3, env, every=5)  # steps and cadence may change on resume
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert f"resuming dcgan from step {step}" in err
    rows = (tmp_path / "out/losses.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, step + 4))
    assert RunLayout(tmp_path / "out").checkpoint_steps() == [step + 3]


def _tiny_run(tmp_path, tiny_arch, tiny_data, overrides=None, key="dcgan", **kw):
    gan = {"steps": 20, "checkpoint_every": 5, "batch_size": 16, **(overrides or {})}
    run = parse_params({"gan": gan}).run(key)
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    with StageRun("train_gan", {}, run_key=key, log_models=False) as tracker:
        return train_gan(
            key,
            run,
            tiny_arch,
            tiny_data,
            generator_payload(g),
            tmp_path / "out",
            tracker,
            resume_root=tmp_path / "resume",
            **kw,
        )


class InfAt:
    """The `wrap` hook of train_gan: the real method, but at the start of the given calls of
    its step one of D's weights is set to +inf, so the real step computes non-finite losses.
    Records, per call, the method's state before it, the batch drawn and the losses."""

    def __init__(self, calls: set[int]) -> None:
        self.at, self.method, self.calls = calls, None, 0
        self.before: list[dict] = []
        self.batches: list[torch.Tensor] = []
        self.losses: list[dict[str, float]] = []

    def __call__(self, method, batches) -> InfAt:
        self.method = method
        return self

    def __getattr__(self, name: str):
        return getattr(self.__dict__["method"], name)

    def train_step(self, next_batch):
        self.calls += 1
        self.before.append(copy.deepcopy(self.method.state_dict()))
        if self.calls in self.at:
            with torch.no_grad():
                next(self.method.discriminator.parameters()).fill_(float("inf"))

        def drawn():
            batch = next_batch()
            self.batches.append(batch[0].clone())
            return batch

        losses = self.method.train_step(drawn)
        self.losses.append({k: float(v) for k, v in losses.items()})
        return losses


def _tensors(state) -> dict[str, torch.Tensor]:
    """The tensors of a nested state, by their path."""
    if torch.is_tensor(state):
        return {"": state}
    if not isinstance(state, dict | list | tuple):
        return {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    return {f"{k}.{p}": t for k, v in items for p, t in _tensors(v).items()}


def _equal(a, b) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_nonfinite_loss_stops_naming_step_and_checkpoints_nothing_after(
    tmp_path, tiny_arch, tiny_data
):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 7: \{'d_loss': nan"):
        _tiny_run(tmp_path, tiny_arch, tiny_data, wrap=InfAt({7}))
    assert RunLayout(tmp_path / "out").checkpoint_steps() == [5]
    assert [p.name for p in tmp_path.glob(STATES)] == ["state_00000005.pt"]


def test_nonfinite_loss_rolls_back_and_retries(tmp_path, tiny_arch, tiny_data):
    """A real +inf weight at step 7: the rollback restores the state saved at step 5 (weights
    and optimizers, so the inf is gone) and the replay draws the same batches with fresh noise."""
    inf = InfAt({7})
    saved = {}

    def peek(method, batches):  # the state file at step 5, read while it exists (call 8)
        wrapped = inf(method, batches)
        real = wrapped.train_step

        def step(next_batch):
            if inf.calls == 7:  # call 8 comes next: the replay of step 6
                saved.update(load_checkpoint(tmp_path / STATES.replace("*", "00000005")))
            return real(next_batch)

        wrapped.__dict__["train_step"] = step
        return wrapped

    with pytest.warns(UserWarning, match="non-finite loss at step 7.*rolled back to step 5"):
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data, {"nonfinite_retries": 1}, wrap=peek)
    assert summary["checkpoints"] == [5, 10, 15, 20]
    assert inf.calls == 22  # 6 good + 1 non-finite, replayed from step 5: 15 more
    assert not all(map(math.isfinite, inf.losses[6].values()))  # call 7: the real inf
    # Call 8 starts from exactly the saved state; call 7 had started from a later one.
    assert _equal(inf.before[7], saved["method"])
    assert _equal(inf.before[7], inf.before[5])
    assert not _equal(inf.before[6], saved["method"])
    # The replay of step 6 (call 8) draws the failed attempt's batch with other noise.
    assert torch.equal(inf.batches[7], inf.batches[5])
    assert inf.losses[7] != inf.losses[5]
    assert all(math.isfinite(v) for losses in inf.losses[7:] for v in losses.values())


def test_resume_with_changed_loss_is_refused_with_the_differences(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    with pytest.raises(NonFiniteLossError):  # leaves a resume state at step 10
        _tiny_run(tmp_path, tiny_arch, tiny_data, wrap=InfAt({12}))
    with pytest.raises(
        ResumeMismatchError, match=r"loss: saved 'ns' → now 'lsgan'[\s\S]*UGAN_FRESH_START=1"
    ):
        _tiny_run(tmp_path, tiny_arch, tiny_data, {"loss": "lsgan"})
    monkeypatch.setenv("UGAN_FRESH_START", "1")
    assert _tiny_run(tmp_path, tiny_arch, tiny_data, {"loss": "lsgan"})["checkpoints"] == [
        5,
        10,
        15,
        20,
    ]


# What a resumed run may not change besides the loss: the argument of `_tiny_run` it changes,
# and the line of the refusal that names it.
CHANGES = {
    "architecture": (
        lambda arch: {"tiny_arch": dataclasses.replace(arch, base_channels=arch.base_channels * 2)},
        r"arch: saved \{[^}]*'base_channels': 4",
    ),
    "optimizer": (
        lambda arch: {"overrides": {"optim": {"lr": 1e-3}}},
        r"optim: saved .*'lr': 0\.0002",
    ),
    "data": (
        lambda arch: {"fingerprint": {"data": "digest-b", "init_file": "digest-a"}},
        r"data: saved 'digest-a' → now 'digest-b'",
    ),
    "init": (
        lambda arch: {"fingerprint": {"data": "digest-a", "init_file": "digest-b"}},
        r"init_file: saved 'digest-a' → now 'digest-b'",
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_resume_with_another_architecture_optimizer_data_or_init_is_refused(
    tmp_path, tiny_arch, tiny_data, change
):
    digests = {"data": "digest-a", "init_file": "digest-a"}  # what gan_run fingerprints
    with pytest.raises(NonFiniteLossError):  # leaves a resume state at step 10
        _tiny_run(tmp_path, tiny_arch, tiny_data, wrap=InfAt({12}), fingerprint=digests)
    changed, named = CHANGES[change]
    arguments = {"tiny_arch": tiny_arch, "overrides": None, "fingerprint": digests}
    arguments |= changed(tiny_arch)
    with pytest.raises(ResumeMismatchError, match=named):
        _tiny_run(tmp_path, tiny_data=tiny_data, **arguments)


def _states_at_10_and_15(tmp_path, tiny_arch, tiny_data) -> Path:
    with pytest.raises(NonFiniteLossError):  # states at 10 and 15 remain
        _tiny_run(tmp_path, tiny_arch, tiny_data, wrap=InfAt({17}))
    return tmp_path / "resume/train_gan/dcgan"


def test_truncated_newest_state_falls_back_to_previous_with_warning(tmp_path, tiny_arch, tiny_data):
    newest = _states_at_10_and_15(tmp_path, tiny_arch, tiny_data) / "state_00000015.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(
        UserWarning, match=r"skipping unusable resume state: checkpoint .*state_00000015\.pt"
    ):
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data)
    assert summary["checkpoints"] == [5, 10, 15, 20]


def _another_architectures_nets(state_file: Path, arch) -> None:
    """Rewrite a state file with the nets of a wider architecture, its fingerprint unchanged: a
    valid .pt that claims the run's params but cannot be loaded into the run's nets."""
    state = load_checkpoint(state_file)
    wider = dataclasses.replace(arch, base_channels=arch.base_channels * 2)
    state["method"]["generator"] = Generator(wider).state_dict()
    state["method"]["discriminator"] = Discriminator(wider).state_dict()
    save_checkpoint(state_file, state)


def test_a_state_of_other_shapes_falls_back_to_the_previous_one_with_a_warning(
    tmp_path, tiny_arch, tiny_data
):
    folder = _states_at_10_and_15(tmp_path, tiny_arch, tiny_data)
    _another_architectures_nets(folder / "state_00000015.pt", tiny_arch)
    with pytest.warns(UserWarning) as caught:
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data)
    shown = "\n".join(str(w.message) for w in caught)
    assert re.search(
        r"skipping unusable resume state: checkpoint \S*state_00000015\.pt does not fit the "
        r"nets its params describe \('method\.generator\.project\.0\.weight': file \(784, 8\) "
        r"vs net \(392, 8\);.*moved aside to state_00000015\.pt\.unusable",
        shown,
    ), shown
    assert "starting over" not in shown
    assert summary["checkpoints"] == [5, 10, 15, 20]
    assert list(folder.glob("state_*")) == []  # finished: the store is cleared, aside too


def test_when_no_state_fits_the_run_starts_over_naming_the_files(tmp_path, tiny_arch, tiny_data):
    folder = _states_at_10_and_15(tmp_path, tiny_arch, tiny_data)
    for step in (10, 15):
        _another_architectures_nets(folder / f"state_{step:08d}.pt", tiny_arch)
    inf = InfAt(set())
    with pytest.warns(UserWarning) as caught:
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data, wrap=inf)
    shown = [str(w.message) for w in caught]
    for step in (15, 10):
        assert any(f"state_{step:08d}.pt does not fit the nets" in message for message in shown), (
            shown
        )
    assert re.search(
        r"no usable resume state for dcgan \(\S*state_00000015\.pt\.unusable, "
        r"\S*state_00000010\.pt\.unusable: see above\); starting over from step 0",
        shown[-1],
    ), shown
    assert inf.calls == 20  # from step 0
    assert summary["checkpoints"] == [5, 10, 15, 20]


def test_second_trainer_on_the_same_folder_is_refused(tmp_path, tiny_arch, tiny_data):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path\n"
                "from ugan.training.resume import ResumeStore\n"
                f"with ResumeStore('train_gan/dcgan', {{}}, Path({str(tmp_path / 'resume')!r})):\n"
                "    print('locked', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="another trainer is using"):
            _tiny_run(tmp_path, tiny_arch, tiny_data)
    finally:
        holder.kill()
        holder.wait()
    with ResumeStore("train_gan/dcgan", {}, tmp_path / "resume"):
        pass  # the lock died with its holder


def test_unreachable_tracking_store_training_goes_on_and_syncs_later(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the spool lives under ./.ugan/spool
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    with pytest.warns(UserWarning, match="unreachable"):
        summary = _tiny_run(tmp_path, tiny_arch, tiny_data)
    assert summary["checkpoints"] == [5, 10, 15, 20]
    spools = pending()
    assert len(spools) == 1 and "d_loss" in (spools[0] / "events.jsonl").read_text()

    store = f"sqlite:///{tmp_path / 'back.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "ugan.pipeline.cli", "sync"],
        env=dict(os.environ, MLFLOW_TRACKING_URI=store),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert pending() == []
    client = mlflow.MlflowClient(store)
    (run,) = _stage_runs(client)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "d_loss")][-1] == 20
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"samples", "losses.csv"}


def test_concurrent_stage_processes_share_the_sqlite_store(tmp_path, env):
    code = (
        "from ugan.tracking.stage_run import StageRun\n"
        "with StageRun('s', {'a': 1}) as r:\n"
        "    for i in range(300): r.log_metrics({'m': i}, step=i); r.flush()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        assert "unreachable" not in err
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = _stage_runs(client)
    assert len(runs) == 3
    assert all(len(client.get_metric_history(r.info.run_id, "m")) == 300 for r in runs)
