"""`torchrun --nproc_per_node=2 -m ugan.training.distributed` on the CPU (gloo): one model,
two processes.

The DDP run and the single-process reference train the same run (same global batch, seed and
data) for a few steps. BatchNorm is synchronised across ranks (GlooSyncBatchNorm) and dropout is
0 (the ranks share one dropout stream, a single process draws its own), so the two runs must
agree up to float rounding: the tolerance is a thousandth of the gap to a run that trains on a
rank's half batch alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from ugan.config.load import load_params, parse_params
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import UserError
from ugan.core.paths import RunLayout
from ugan.data.prepared import HELDOUT, TRAIN, PreparedData, save_prepared
from ugan.nets.dcgan import Discriminator
from ugan.nets.generator_file import load_generator
from ugan.tracking.stage_run import StageRun
from ugan.training.distributed import (
    DataParallelMethod,
    Group,
    NotLaunchedError,
    check_ranks_fit_gpus,
    main,
)
from ugan.training.gan import build_method, train_gan
from ugan.training.syncbn import DifferentiableSyncBatchNorm, sync_batchnorm_class

TESTS = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

STEPS, BATCH = 4, 32
PARAMS = {
    "model": {"latent_dim": 16, "base_channels": 8, "dropout": 0.0},
    "gan": {"steps": STEPS, "checkpoint_every": STEPS, "batch_size": BATCH, "log_every": 1},
    "runs": {"dcgan": {"init": "random"}},
    "tracking": {"log_models": True},
    "device": "cpu",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 160
    images = rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
    split = np.where(np.arange(n) < 128, TRAIN, HELDOUT).astype(np.uint8)
    save_prepared(
        tmp_path / "data/prepared/dataset.npz",
        PreparedData(images, np.arange(n) % 10, split, {"num_classes": 10}),
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    arch = load_params(tmp_path / "params.yaml").model.arch(28, 1)
    recipe = {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    save_checkpoint(tmp_path / "models/init/random.pt", {**recipe, "init_std": 0.02})
    return tmp_path


def _single_process(project: Path, out: str, batch_size: int = BATCH) -> dict:
    """The ordinary trainer in this process; returns the final generator's state."""
    params = load_params(project / "params.yaml")
    run = params.run("dcgan")
    run = run.model_copy(update={"gan": run.gan.model_copy(update={"batch_size": batch_size})})
    from ugan.core.checkpoint_io import load_checkpoint
    from ugan.data.prepared import load_prepared

    data = load_prepared(project / "data/prepared/dataset.npz")
    with StageRun("train_gan", {}, run_key=out, log_models=False) as tracker:
        train_gan(
            out,
            run,
            params.model.arch(28, 1),
            data,
            load_checkpoint(project / "models/init/random.pt"),
            project / out,
            tracker,
            resume_root=project / "resume-single",
        )
    return load_generator(RunLayout(project / out).checkpoint_path(STEPS)).state_dict()


def _distance(a: dict, b: dict) -> float:
    keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    return float(torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in keys)))


def test_two_gloo_ranks_train_one_model_matching_a_single_process(project: Path, tmp_path):
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        OMP_NUM_THREADS="1",
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        [*cmd, "-m", "ugan.training.distributed", "dcgan"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    layout = RunLayout(project / "runs/dcgan")
    summary = json.loads(layout.summary.read_text())
    digests = summary["data_parallel"]["parameter_sha256"]
    assert summary["data_parallel"]["world_size"] == 2 and len(digests) == 2
    assert digests[0] == digests[1], "ranks must end with identical parameters"
    losses = layout.losses_csv.read_text().splitlines()
    assert len(losses) == STEPS + 1 and losses[0].startswith("step,d_loss,g_loss")
    # Rank 0 alone tracked the run, and logged a plain-BatchNorm generator.
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("ugan").experiment_id])
    trained = [r for r in runs if r.data.tags.get("ugan.stage") == "train_gan"]
    assert len(trained) == 1 and trained[0].data.tags["ugan.world_size"] == "2"
    assert trained[0].data.params["data_parallel.backend"] == "gloo"
    assert "generator" in {a.path for a in client.list_artifacts(trained[0].info.run_id)}

    init = torch.load(project / "models/init/random.pt", weights_only=True)  # a recipe only
    assert "state_dict" not in init
    ddp = load_generator(layout.checkpoint_path(STEPS)).state_dict()
    single = _single_process(project, "single")
    half = _single_process(project, "half", batch_size=BATCH // 2)  # one rank, unsynced
    error, control = _distance(ddp, single), _distance(half, single)
    assert error < 1e-3 * control, (error, control)


def _torchrun_dcgan(project: Path, tmp_path: Path) -> dict:
    env = dict(
        os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", OMP_NUM_THREADS="1"
    )
    result = subprocess.run(
        [*TORCHRUN, "-m", "ugan.training.distributed", "dcgan"],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(RunLayout(project / "runs/dcgan").summary.read_text())
    digests = summary["data_parallel"]["parameter_sha256"]
    assert digests[0] == digests[1], "ranks must end with identical parameters"
    return load_generator(RunLayout(project / "runs/dcgan").checkpoint_path(STEPS)).state_dict()


def test_began_ranks_steer_k_and_the_learning_rate_by_the_global_batch(project, tmp_path):
    """BEGAN's k_t and its learning-rate halvings come from L(x), L(G(z)) of the whole batch
    (not each rank's half), so two ranks train what one process trains (BEGAN has no BatchNorm)."""
    params = {**PARAMS, "runs": {"dcgan": {"init": "random", "method": "began"}}}
    began = {"gamma": 1.0, "k_init": 0.5, "lambda_k": 1.0, "lr_halve_patience": 1}
    params["gan"] = {**PARAMS["gan"], "began": began}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    ddp = _torchrun_dcgan(project, tmp_path)
    single = _single_process(project, "single")
    half = _single_process(project, "half", batch_size=BATCH // 2)
    error, control = _distance(ddp, single), _distance(half, single)
    assert error < 1e-3 * control, (error, control)


def test_a_gradient_penalty_run_trains_data_parallel(project, tmp_path):
    """wgan-gp differentiates D twice through its synchronised BatchNorm (was: wrong gradients
    under gloo, a crash under nccl). Its penalty's random points are drawn per rank, so the run
    is not the single process's; the gradients are (see the BatchNorm test above)."""
    params = {**PARAMS, "gan": {**PARAMS["gan"], "loss": "wgan-gp"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    state = _torchrun_dcgan(project, tmp_path)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_without_torchrun_the_entry_point_says_how_to_start_it(project, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)
    with pytest.raises(
        NotLaunchedError, match="torchrun --nproc_per_node=N -m ugan.training.distributed"
    ):
        main("dcgan")


# -- a gradient penalty through synchronised BatchNorm ------------------------------------


def test_synchronised_batchnorm_gives_a_gradient_penalty_the_single_process_gradients(tmp_path):
    """Two gloo ranks, each on half of one batch, a loss with a gradient penalty (its gradient
    is differentiated again, through the BatchNorm's cross-rank statistics): the averaged
    gradients and the running statistics are those of one process on the whole batch."""
    sys.path.insert(0, str(TESTS))
    try:
        from syncbn_worker import batch, critic, loss
    finally:
        sys.path.remove(str(TESTS))
    out = tmp_path / "ddp.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [*TORCHRUN, str(TESTS / "syncbn_worker.py"), str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    ddp = torch.load(out, weights_only=True)
    net = critic()
    loss(net, *batch()).backward()
    for name, param in net.named_parameters():
        torch.testing.assert_close(ddp["grads"][name], param.grad, rtol=1e-4, atol=1e-6)
    for name, buffer in net.named_buffers():
        torch.testing.assert_close(ddp["buffers"][name], buffer, rtol=1e-5, atol=1e-6)


def test_torch_syncbatchnorm_serves_only_nets_that_are_differentiated_once():
    """torch's CUDA SyncBatchNorm has no double backward (pytorch#61222)."""
    assert sync_batchnorm_class("cuda", twice_differentiated=False) is torch.nn.SyncBatchNorm
    assert sync_batchnorm_class("cuda", twice_differentiated=True) is DifferentiableSyncBatchNorm
    assert sync_batchnorm_class("cpu", twice_differentiated=False) is DifferentiableSyncBatchNorm


def test_a_penalty_run_syncs_its_discriminator_with_the_differentiable_batchnorm(
    tmp_path, tiny_arch
):
    """The wiring, in a one-process gloo group standing for an nccl one (nothing runs on CUDA:
    only the classes are chosen)."""
    raw = {"gan": {"steps": 2, "checkpoint_every": 2, "loss": "wgan-gp"}}
    run = parse_params(raw).run("dcgan")
    recipe = {"arch": tiny_arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    method = build_method(tiny_arch, run, recipe, 0.02)
    # A penalised critic of ours has layer norm (nothing to sync); a twice-differentiated net
    # may still hold batch norm (RFGAN's frozen DAE encoder inside its D): stand one in.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in method.discriminator.modules())
    method.discriminator = Discriminator(tiny_arch)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        DataParallelMethod(method, Group(0, 1, 0, torch.device("cuda")))
    finally:
        torch.distributed.destroy_process_group()
    kinds = {
        name: {type(m) for m in net.modules() if "BatchNorm" in type(m).__name__}
        for name, net in (("g", method.generator), ("d", method.discriminator))
    }
    assert kinds == {"g": {torch.nn.SyncBatchNorm}, "d": {DifferentiableSyncBatchNorm}}


# -- more processes than GPUs --------------------------------------------------------------


def test_more_ranks_than_visible_gpus_is_refused_before_starting():
    check_ranks_fit_gpus(local_world_size=2, gpus=2)
    with pytest.raises(UserError) as refused:
        check_ranks_fit_gpus(local_world_size=4, gpus=2, visible="0,1")
    message = str(refused.value)
    assert (
        "4 processes" in message and "2 GPUs" in message and "CUDA_VISIBLE_DEVICES=0,1" in message
    )
    assert "--nproc_per_node=2" in message and "device: cpu" in message
    with pytest.raises(UserError, match="no GPU"):
        check_ranks_fit_gpus(local_world_size=2, gpus=0)
