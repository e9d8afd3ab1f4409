"""DVC stage `init_random`: the generator init of ordinary runs — the twin of `transfer`'s
output, so every GAN run reads its init from a file and DVC's graph stays exact (a VAE change
reruns unbalanced runs only).

The file declares the architecture and `source: random` but carries no weights: each run draws
its generator from N(0, init_std) with its own seed, right after its discriminator, so runs
with different seeds really start from different generators."""

from ugan.core.checkpoint_io import save_checkpoint
from ugan.data.prepared import load_prepared
from ugan.pipeline.stage import entry_point, params


@entry_point
def main() -> None:
    p = params()
    data = load_prepared("data/prepared/dataset.npz")
    arch = p.model.arch(p.data.image_size, data.shape[0], data.num_classes)
    recipe = {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    save_checkpoint("models/init/random.pt", {**recipe, "init_std": p.model.init_std})


if __name__ == "__main__":
    main()
