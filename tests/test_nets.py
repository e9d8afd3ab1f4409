import pytest
import torch

from ugan.models.vae import VAE
from ugan.nets.arch import ArchConfig
from ugan.nets.dcgan import Discriminator, Encoder, Generator, num_scales


@pytest.mark.parametrize(("size", "channels", "smallest"), [(28, 1, 7), (32, 3, 4), (64, 3, 4)])
def test_shapes_at_every_image_size(size, channels, smallest):
    cfg = ArchConfig(image_size=size, channels=channels, latent_dim=16, base_channels=4)
    g, d, e = Generator(cfg), Discriminator(cfg), Encoder(cfg)
    z = torch.randn(3, 16)
    x = g(z)
    assert x.shape == (3, channels, size, size)
    assert x.abs().max() <= 1.0  # tanh output
    assert d(x).shape == (3,)
    mu, logvar = e(x)
    assert mu.shape == logvar.shape == (3, 16)
    # The discriminator downsamples to 7×7 for 28 px and 4×4 for 32 / 64 px (paper §4.2-4.4).
    assert d.trunk.body(x).shape[-1] == smallest


def test_layers_added_or_removed_by_size():
    assert [num_scales(s) for s in (28, 32, 64)] == [2, 3, 4]
    with pytest.raises(ValueError, match="28, 32, 64"):
        num_scales(48)


def test_decoder_is_the_generator_class(tiny_arch):
    vae = VAE(tiny_arch)
    assert type(vae.decoder) is Generator
    assert vae.decoder.state_dict().keys() == Generator(tiny_arch).state_dict().keys()


def test_encoder_mirrors_discriminator(tiny_arch):
    enc, disc = Encoder(tiny_arch), Discriminator(tiny_arch)
    enc_trunk = {k: v.shape for k, v in enc.trunk.state_dict().items()}
    disc_trunk = {k: v.shape for k, v in disc.trunk.state_dict().items()}
    assert enc_trunk == disc_trunk
    assert enc.head.out_features == 2 * tiny_arch.latent_dim
    assert disc.head.out_features == 1


def test_paper_architecture_choices(tiny_arch):
    g, d = Generator(tiny_arch), Discriminator(tiny_arch)
    g_acts = {type(m).__name__ for m in g.modules()}
    d_acts = {type(m).__name__ for m in d.modules()}
    assert "LeakyReLU" in g_acts and "ReLU" not in g_acts
    assert "ReLU" in d_acts and "Dropout" in d_acts
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)
    # No batch norm right after the input layer of D, none on G's output layer.
    body = list(d.trunk.body)
    assert isinstance(body[0], torch.nn.Conv2d) and not isinstance(body[1], torch.nn.BatchNorm2d)
    assert isinstance(list(g.upsample)[-1], torch.nn.ConvTranspose2d)


def test_conditional_nets_take_labels_and_transfer_stays_one_to_one():
    from ugan.models.transfer import max_output_difference, transfer_decoder

    cfg = ArchConfig(image_size=28, channels=1, latent_dim=8, base_channels=4, num_classes=10)
    vae = VAE(cfg)
    x, y = torch.rand(6, 1, 28, 28) * 2 - 1, torch.arange(6)
    logits, mu, logvar = vae(x, y)
    assert logits.shape == x.shape and mu.shape == (6, 8)
    d = Discriminator(cfg)
    assert d(x, y).shape == (6,)
    # The label changes the output: the nets really read it.
    assert not torch.allclose(d.eval()(x, y), d(x, (y + 1) % 10))
    g = Generator(cfg).eval()
    z = torch.randn(6, 8)
    assert not torch.allclose(g(z, y), g(z, (y + 1) % 10))
    with pytest.raises(ValueError, match="class-conditional: pass the labels"):
        g(z)
    transfer_decoder(vae.decoder.state_dict(), g)
    assert max_output_difference(g, vae.decoder, 8) == 0.0
