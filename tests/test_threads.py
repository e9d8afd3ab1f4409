"""A running stage follows the number of stage processes sharing the cores (`UGAN_JOBS_FILE`,
kept by `ugan run`'s scheduler): when a sibling run ends, the ones left take its cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ugan.config.schema import VAEParams
from ugan.core import runtime
from ugan.core.runtime import ThreadsFollower, available_cores, jobs_now
from ugan.tracking.stage_run import StageRun
from ugan.training.vae import pretrain_vae

CORES = available_cores()
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="one core: nothing to re-size")


@pytest.fixture
def threads(monkeypatch):
    """A clean thread environment; torch's pool is restored after the test."""
    for name in ("OMP_NUM_THREADS", runtime.THREADS_ENV, runtime.JOBS_ENV, runtime.JOBS_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def jobs_file(tmp_path, monkeypatch, threads):
    path = tmp_path / "jobs.txt"
    monkeypatch.setenv(runtime.JOBS_ENV, "2")
    monkeypatch.setenv(runtime.JOBS_FILE_ENV, str(path))
    return path


def test_jobs_now_reads_the_live_count_and_falls_back_to_ugan_jobs(jobs_file):
    assert jobs_now() == 2  # no file yet: UGAN_JOBS
    jobs_file.write_text("3")
    assert jobs_now() == 3
    jobs_file.write_text("")  # never written half by the scheduler (atomic), but never fatal
    assert jobs_now() == 2
    jobs_file.unlink()  # the scheduler ended
    assert jobs_now() == 2


@needs_two_cores
def test_the_follower_resizes_the_pool_when_the_count_changes(jobs_file, capsys):
    jobs_file.write_text("2")
    assert runtime.configure_threads() == CORES // 2
    follow = ThreadsFollower(every=0)
    follow()
    assert torch.get_num_threads() == CORES // 2  # unchanged: still two jobs
    jobs_file.write_text("1")
    follow()
    assert torch.get_num_threads() == CORES
    assert f"torch threads {CORES // 2} → {CORES}" in capsys.readouterr().err
    jobs_file.write_text("2")
    follow()
    assert torch.get_num_threads() == CORES // 2


@needs_two_cores
def test_the_follower_looks_at_most_every_few_seconds(jobs_file):
    jobs_file.write_text("2")
    runtime.configure_threads()
    follow = ThreadsFollower(every=3600)
    jobs_file.write_text("1")
    follow()
    assert torch.get_num_threads() == CORES // 2


@needs_two_cores
@pytest.mark.parametrize("fixed", [runtime.THREADS_ENV, "OMP_NUM_THREADS"])
def test_threads_the_user_fixed_are_never_resized(jobs_file, monkeypatch, fixed):
    monkeypatch.setenv(fixed, "1")
    torch.set_num_threads(1)
    jobs_file.write_text("1")
    ThreadsFollower(every=0)()
    assert torch.get_num_threads() == 1


@needs_two_cores
def test_without_a_jobs_file_the_pool_stays_as_configured(threads, monkeypatch):
    monkeypatch.setenv(runtime.JOBS_ENV, "2")  # `dvc queue start -j 2`: no scheduler of ours
    runtime.configure_threads()
    ThreadsFollower(every=0)()
    assert torch.get_num_threads() == CORES // 2


@needs_two_cores
def test_the_training_loop_takes_the_cores_a_sibling_left(
    jobs_file, tmp_path, monkeypatch, tiny_data, tiny_arch
):
    """A run started beside another (one thread on 2 cores) trains on both once the jobs file
    says it is alone: the loop looks between steps."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runtime, "RESIZE_SECONDS", 0.0)
    jobs_file.write_text("2")
    assert runtime.configure_threads() == CORES // 2
    jobs_file.write_text("1")  # the sibling ended
    with StageRun("pretrain_vae", {}, log_models=False) as tracker:
        params = VAEParams(steps=2, batch_size=16, sample_every=2)
        pretrain_vae(params, tiny_arch, tiny_data, Path("vae.pt"), Path("samples"), tracker,
                     resume_root=Path("resume"), num_samples=4)  # fmt: skip
    assert torch.get_num_threads() == CORES
