"""Network modules (nn.Module only): the paper's conv nets (`dcgan`: Generator == VAE decoder,
Encoder mirrors the Discriminator), BEGAN's, the MLPs of GAAN Table 1, the evaluation classifier,
the net families, and the generator file format."""
