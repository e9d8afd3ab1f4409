import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import TransferError
from ugan.models.transfer import max_output_difference, transfer_decoder
from ugan.models.vae import VAE
from ugan.nets.dcgan import Generator


def test_transfer_makes_generator_equal_decoder(tiny_arch):
    torch.manual_seed(0)
    vae = VAE(tiny_arch)
    # Make the BN running statistics non-trivial, as after real training.
    vae.train()
    vae(torch.rand(8, 1, 28, 28) * 2 - 1)
    generator = Generator(tiny_arch)
    assert max_output_difference(generator, vae.decoder, tiny_arch.latent_dim) > 0
    transfer_decoder(vae.decoder.state_dict(), generator)
    assert max_output_difference(generator, vae.decoder, tiny_arch.latent_dim) == 0.0


def test_shape_mismatch_names_key_and_both_shapes_and_loads_nothing(tiny_arch):
    wider = dataclasses.replace(tiny_arch, base_channels=tiny_arch.base_channels * 2)
    decoder = Generator(wider)
    generator = Generator(tiny_arch)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    with pytest.raises(
        TransferError, match=r"shape mismatch at '[\w.]+': decoder \(\d+.*\) vs generator \(\d+"
    ):
        transfer_decoder(decoder.state_dict(), generator)
    after = generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_missing_key_is_named(tiny_arch):
    state = Generator(tiny_arch).state_dict()
    state.pop("project.0.weight")
    with pytest.raises(TransferError, match="project.0.weight"):
        transfer_decoder(state, Generator(tiny_arch))


def _transfer_stage(project: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
    return subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "stages/transfer.py")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_transfer_stage_names_a_vae_file_whose_decoder_does_not_fit_its_arch(
    tmp_path, tiny_arch
):
    (tmp_path / "params.yaml").write_text("{}\n")
    wider = dataclasses.replace(tiny_arch, base_channels=tiny_arch.base_channels * 2)
    vae = {"arch": tiny_arch.to_dict(), "decoder": Generator(wider).state_dict()}
    save_checkpoint(tmp_path / "models/vae.pt", vae)
    result = _transfer_stage(tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.search(
        r"^error: models/vae\.pt: shape mismatch at '[\w.]+': decoder \(\d+.*\) vs generator "
        r"\(\d+.*\); the file is corrupt or from another version: rerun `dvc repro pretrain_vae`$",
        result.stderr,
        re.M,
    ), result.stderr[-3000:]
    assert not (tmp_path / "models/init").exists()

    save_checkpoint(tmp_path / "models/vae.pt", {"decoder": vae["decoder"]})
    result = _transfer_stage(tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: models/vae.pt: no 'arch' in it;" in result.stderr
