"""Benchmark — reading Stacked MNIST modes: N stacked images (3 digits each) through the digit
classifier as the benchmark `stacked-mnist` labels them (`classifier_labeller` of
`Classifier.for_inference()`: batch norm folded into the convs, channels_last), against the same
labeller on the classifier as trained (its batch norms, contiguous NCHW weights), in the same
run, one torch thread (a mode cell's), best of `--rounds`. Goal: the fused net faster (ratio < 1)
with every label the same. Scoring a checkpoint of the Stacked MNIST row reads 25,600 images
(76,800 digits): it was half of a GAN cell's time.

    python benchmarks/stacked_labeller.py [--images 25600] [--rounds 3] [--classifier PATH]

Without `--classifier` a classifier trains here first (`--train-steps`, on the embedded
MNIST-5k), so its batch norms hold trained statistics; the images are stacked held-out digits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from common import arguments, machine, mnist, report, table, timed


class _NoTracking:
    def log_metrics(self, metrics, step=None):
        pass


def classifier(args, data):
    from ugan.config.schema import ClassifierParams
    from ugan.nets.classifier import load_classifier
    from ugan.training.classifier import train_classifier

    if args.classifier:
        return load_classifier(args.classifier)
    params = ClassifierParams(steps=args.train_steps, min_accuracy=0.0)
    model, _ = train_classifier(params, data, _NoTracking(), torch.device("cpu"))
    return model.eval()


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25_600, help="stacked images (3 digits)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classifier", type=Path, help="a trained classifier checkpoint")
    parser.add_argument("--train-steps", type=int, default=300)
    args = parser.parse_args()

    from ugan.data.stacked import stack_digits
    from ugan.evaluation.modes import classifier_labeller, stacked_modes

    torch.set_num_threads(1)
    data = mnist(28)
    model = classifier(args, data)
    images, truth = stack_digits(*data.heldout, args.images, seed=3)
    ways = {
        "as trained (reference)": classifier_labeller(model),
        "for_inference (what the benchmark runs)": classifier_labeller(model.for_inference()),
    }
    seconds, modes = {}, {}

    def label(name: str) -> None:
        modes[name] = stacked_modes(images, ways[name])

    for _ in range(args.rounds):
        for name in ways:
            took = timed(lambda n=name: label(n))
            seconds[name] = min(seconds.get(name, float("inf")), took)
            print(f"  {name}: {took:.2f} s")
    reference, fused = (seconds[name] for name in ways)
    reference_modes, fused_modes = (modes[name] for name in ways)
    same = int((reference_modes == fused_modes).sum())
    correct = float((fused_modes == truth).mean())
    rows = [[name, f"{seconds[name]:.2f}", f"{seconds[name] / reference:.2f}"] for name in ways]
    print(
        f"\n{args.images:,} stacked images ({3 * args.images:,} digits), one torch thread, "
        f"best of {args.rounds}"
    )
    print(table(["labeller", "seconds", "÷ as trained"], rows))
    print(f"labels the same: {same:,} of {args.images:,}; all three digits right: {correct:.3f}")
    figures = {
        "images": args.images,
        "seconds_as_trained": round(reference, 3),
        "seconds_for_inference": round(fused, 3),
        "ratio": round(fused / reference, 3),
        "same_labels": same,
        "stacked_accuracy": round(correct, 4),
    }
    report(args, "stacked_labeller", machine("cpu"), figures)


if __name__ == "__main__":
    main()
