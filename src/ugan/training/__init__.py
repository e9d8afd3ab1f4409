"""One training loop (GAN, VAE, DAE), resume, speed presets (accel), torchrun data parallelism,
and the trainers of each stage."""
