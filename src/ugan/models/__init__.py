"""Models built from the nets: the VAE (decoder = generator), RFGAN's denoising autoencoder, and the
decoder → generator transfer."""
