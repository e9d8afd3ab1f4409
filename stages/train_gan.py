"""DVC stage `train_gan@<run>`: one run of `runs:` (ordinary or unbalanced) → runs/<run>/."""

from ugan.pipeline.stage import entry_point, params, run_key
from ugan.training.gan_run import run_train_gan


@entry_point
def main(*argv: str) -> None:
    run_train_gan(params(), run_key(argv, "train_gan"))


if __name__ == "__main__":
    main()
