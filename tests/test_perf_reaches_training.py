"""`perf:` reaches every training stage: the function `train_gan@<run>` runs (`run_train_gan`,
reading params as the stage does) and the VAE / DAE pretrainings train differently when a perf
setting changes, and identically when it does not (so the difference is the setting's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ugan.config.load import parse_params
from ugan.config.schema import DAEParams, PerfParams, VAEParams
from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.paths import PREPARED
from ugan.data.prepared import save_prepared
from ugan.tracking.stage_run import StageRun
from ugan.training.dae import pretrain_dae
from ugan.training.gan_run import init_path, run_train_gan
from ugan.training.vae import pretrain_vae

BF16 = {"precision": "bf16"}  # autocast of the forward passes: other numerics, visibly


def _weights(path: Path, key: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_data):
    monkeypatch.chdir(tmp_path)
    save_prepared(PREPARED, tiny_data)
    return tiny_data


def _gan(perf: dict, name: str) -> dict[str, torch.Tensor]:
    p = parse_params(
        {
            "model": {"latent_dim": 8, "base_channels": 4},
            "gan": {"steps": 6, "checkpoint_every": 6, "batch_size": 16, "num_sample_images": 4},
            "runs": {"g": {"init": "random"}},
            "perf": perf,
            "tracking": {"log_models": False},
            "device": "cpu",
        }
    )
    arch = p.model.arch(28, 1, 10)
    recipe = {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    save_checkpoint(init_path("random"), {**recipe, "init_std": 0.02})
    run_train_gan(p, "g", out_dir=Path(name), resume_root=Path(name) / "resume")
    return _weights(Path(name) / "checkpoints/generator_step_000006.pt", "state_dict")


def test_perf_reaches_the_train_gan_stage(project):
    default, again = _gan({}, "a"), _gan({}, "b")
    bf16 = _gan(BF16, "c")
    assert _same(default, again), "a run must be reproducible for the comparison to mean anything"
    assert not _same(default, bf16), "perf.precision must change how train_gan@<run> trains"


@pytest.mark.parametrize("which", ["vae", "dae"])
def test_perf_reaches_the_pretraining_stages(project, tiny_arch, which):
    def train(perf: PerfParams, name: str) -> dict[str, torch.Tensor]:
        out = Path(name) / "model.pt"
        with StageRun(f"pretrain_{which}", {}, log_models=False) as tracker:
            if which == "vae":
                params = VAEParams(steps=4, batch_size=16, sample_every=4)
                pretrain_vae(params, tiny_arch, project, out, Path(name), tracker, perf=perf,
                             resume_root=Path(name) / "resume", num_samples=4)  # fmt: skip
            else:
                params = DAEParams(steps=4, batch_size=16, sample_every=4)
                pretrain_dae(params, tiny_arch, project, out, Path(name), tracker, perf=perf,
                             resume_root=Path(name) / "resume")  # fmt: skip
        return _weights(out, "decoder")

    default, again = train(PerfParams(), "a"), train(PerfParams(), "b")
    bf16 = train(PerfParams(**BF16), "c")
    assert _same(default, again)
    assert not _same(default, bf16), f"perf.precision must change how pretrain_{which} trains"


def test_train_gan_tags_the_run_with_its_own_method(project, tmp_path):
    import mlflow

    p = parse_params(
        {
            "model": {"latent_dim": 8, "base_channels": 4},
            "gan": {"steps": 2, "checkpoint_every": 2, "batch_size": 16, "num_sample_images": 4},
            "runs": {"a": {"init": "random", "method": "gaan"}},
            "tracking": {"log_models": False},
            "device": "cpu",
        }
    )
    arch = p.model.arch(28, 1, 10)
    recipe = {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    save_checkpoint(init_path("random"), {**recipe, "init_std": 0.02})
    run_train_gan(p, "a", resume_root=Path("resume"))
    runs = mlflow.search_runs(experiment_names=["ugan"], output_format="list")
    (run,) = [r for r in runs if r.data.tags["ugan.stage"] == "train_gan"]
    assert run.data.tags["ugan.method"] == "gaan" and run.data.params["perf.precision"] == "fp32"
