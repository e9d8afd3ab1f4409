"""Benchmark 3 — evaluation: IS / FID / KID of K checkpoints' N generated images through ugan's
`FidelityEvaluator` (what `ugan.evaluation.evaluate` runs: the real split's features computed once
and
reused) against torch-fidelity's `calculate_metrics` called directly on the same images, with
the same feature network and settings (real and generated features every call).

    python benchmarks/evaluation.py [--num-samples 1000] [--checkpoints 4] [--device auto]

The feature network is the project's classifier architecture, randomly initialised (timing does
not depend on its training); the real images are the held-out split of the embedded MNIST-5k.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch_fidelity
from common import arguments, machine, mnist, report, table, timed
from torch.utils.data import Dataset


class Images(Dataset):
    """uint8 (N, C, H, W) → items (C, H, W), as torch-fidelity reads them."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def direct(generated, real, classifier: Path, args, device) -> dict[str, float]:
    from ugan.evaluation.features import EXTRACTOR_NAME, FEATURE_EMBEDDING, FEATURE_LOGITS

    raw = torch_fidelity.calculate_metrics(
        input1=Images(generated),
        input2=Images(real),
        cache=False,
        cuda=device.type == "cuda",
        batch_size=args.batch_size,
        isc=True,
        fid=True,
        kid=True,
        feature_extractor=EXTRACTOR_NAME,
        feature_layer_isc=FEATURE_LOGITS,
        feature_layer_fid=FEATURE_EMBEDDING,
        feature_layer_kid=FEATURE_EMBEDDING,
        feature_extractor_weights_path=str(classifier),
        feature_extractor_compile=False,
        isc_splits=10,
        kid_subsets=100,
        kid_subset_size=min(args.kid_subset_size, len(generated), len(real)),
        samples_shuffle=True,
        datasets_download=False,
        rng_seed=0,
        save_cpu_ram=True,
        verbose=False,
    )
    return {
        "isc_mean": raw[torch_fidelity.KEY_METRIC_ISC_MEAN],
        "fid": raw[torch_fidelity.KEY_METRIC_FID],
        "kid_mean": raw[torch_fidelity.KEY_METRIC_KID_MEAN],
    }


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=4, help="K generators")
    parser.add_argument("--kid-subset-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from ugan.core.checkpoint_io import save_checkpoint
    from ugan.core.device import resolve_device
    from ugan.data.pixels import to_uint8
    from ugan.evaluation.features import EXTRACTOR_NAME, FEATURE_EMBEDDING, FEATURE_LOGITS
    from ugan.evaluation.fidelity import FidelityEvaluator
    from ugan.nets.arch import ArchConfig
    from ugan.nets.classifier import Classifier
    from ugan.nets.dcgan import Generator, init_weights
    from ugan.nets.generator_file import noise, sample

    device = resolve_device(args.device)
    data = mnist(28)
    real = torch.as_tensor(data.heldout[0])
    generated = []
    for k in range(args.checkpoints):  # K "checkpoints": generators of different weights
        torch.manual_seed(k)
        generator = Generator(ArchConfig())
        init_weights(generator)
        z = noise(args.num_samples, generator.cfg.latent_dim, seed=k)
        generated.append(to_uint8(sample(generator, z)))

    with tempfile.TemporaryDirectory() as tmp:
        classifier = Path(tmp) / "classifier.pt"
        torch.manual_seed(0)
        save_checkpoint(classifier, Classifier(channels=1, num_classes=10).to_payload())
        evaluator = FidelityEvaluator(
            classifier,
            real,
            kid_subset_size=args.kid_subset_size,
            batch_size=args.batch_size,
            device=str(device),
            seed=0,
        )
        ours, theirs, ours_s, theirs_s = [], [], [], []
        for images in generated:
            ours_s.append(timed(lambda i=images: ours.append(evaluator(i)), device))
            theirs_s.append(
                timed(
                    lambda i=images: theirs.append(direct(i, real, classifier, args, device)),
                    device,
                )
            )
            print(f"  checkpoint: ugan {ours_s[-1]:.2f} s, torch-fidelity {theirs_s[-1]:.2f} s")
        # One feature pass over the real split and over one checkpoint's images, alone.
        from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

        cuda = device.type == "cuda"
        net = create_feature_extractor(
            EXTRACTOR_NAME,
            [FEATURE_LOGITS, FEATURE_EMBEDDING],
            cuda=cuda,
            feature_extractor_weights_path=str(classifier),
            verbose=False,
        )

        def feature_pass(images: torch.Tensor) -> float:
            return timed(
                lambda: get_featuresdict_from_dataset(
                    Images(images), net, args.batch_size, cuda, True, False
                ),
                device,
            )

        real_pass, gen_pass = feature_pass(real), feature_pass(generated[0])

    difference = max(
        abs(a[key] - b[key]) / max(1e-12, abs(b[key]))
        for a, b in zip(ours, theirs, strict=True)
        for key in b
    )
    k = args.checkpoints
    figures = {
        "num_samples": args.num_samples,
        "real_images": len(real),
        "checkpoints": k,
        "ugan_s": ours_s,
        "torch_fidelity_s": theirs_s,
        "ugan_total_s": sum(ours_s),
        "torch_fidelity_total_s": sum(theirs_s),
        "ratio": sum(theirs_s) / sum(ours_s),
        "real_feature_pass_s": real_pass,
        "generated_feature_pass_s": gen_pass,
        "first_call_s": ours_s[0],
        "later_call_mean_s": sum(ours_s[1:]) / max(1, k - 1),
        "max_relative_metric_difference": difference,
    }
    print(
        f"\nIS / FID / KID of {k} checkpoints × {args.num_samples} generated images against "
        f"{len(real)} real ones (KID: 100 subsets of {args.kid_subset_size})\n"
    )
    print(
        table(
            ["how", "total s", "s per checkpoint", "× ugan"],
            [
                [
                    "ugan FidelityEvaluator (real features once)",
                    f"{sum(ours_s):.2f}",
                    f"{ours_s[0]:.2f} first, {figures['later_call_mean_s']:.2f} later",
                    "1.00",
                ],
                [
                    "torch-fidelity direct (real features every call)",
                    f"{sum(theirs_s):.2f}",
                    f"{sum(theirs_s) / k:.2f}",
                    f"{figures['ratio']:.2f}",
                ],
            ],
        )
    )
    print(
        f"\none real feature pass {real_pass:.2f} s, one generated pass {gen_pass:.2f} s; "
        f"the first call costs {ours_s[0] - figures['later_call_mean_s']:.2f} s more than a "
        f"later one. Same metrics: max relative difference {difference:.1e}"
    )
    report(args, "evaluation", machine(device), figures)


if __name__ == "__main__":
    main()
