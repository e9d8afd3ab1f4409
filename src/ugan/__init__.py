"""ugan: Unbalanced GANs and the autoencoder-assisted GANs they are compared with."""

__version__ = "0.1.0"
