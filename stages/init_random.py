"""DVC stage `init_random`: the seeded random generator init (N(0, 0.02)) that ordinary runs
start from — the twin of `transfer`'s output, so every run reads its init from a file."""

import torch

from ugan.checkpoint import save_checkpoint
from ugan.data.prepared import load_prepared
from ugan.nets import Generator, init_weights
from ugan.nets.registry import generator_payload
from ugan.stage import entry_point, params


@entry_point
def main() -> None:
    p = params()
    data = load_prepared("data/prepared/dataset.npz")
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    torch.manual_seed(p.gan.seed)
    generator = Generator(arch)
    init_weights(generator, p.model.init_std)
    save_checkpoint("models/init/random.pt", generator_payload(generator, source="random"))


if __name__ == "__main__":
    main()
