import dataclasses

import pytest
import torch

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
