"""One generator file's scores: what evaluate computes at every checkpoint, for G's files and
for the weight average's (`gan.ema`) alike, so the two rows of a step differ only by the weights.

A row holds IS / FID / KID (`FidelityEvaluator`), precision / recall / density / coverage
(`PRDCEvaluator`), the collapse check, and what it was scored with (`scoring`: the feature
network's digest, N, reference N, d) — the columns of `fidelity.csv`. Every file is scored on
the same latents (`eval.seed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ugan.data.pixels import to_uint8
from ugan.evaluation.collapse import collapse_metrics
from ugan.evaluation.fidelity import FidelityEvaluator
from ugan.evaluation.prdc import PRDCEvaluator
from ugan.nets.generator_file import load_generator, noise, sample


@dataclass
class CheckpointScorer:
    evaluator: FidelityEvaluator
    prdc: PRDCEvaluator
    heldout: torch.Tensor
    num_samples: int
    seed: int
    batch_size: int
    device: torch.device | str = "cpu"
    scoring: dict = field(init=False)

    def __post_init__(self) -> None:
        self.scoring = self.prdc.scoring_record(self.num_samples)

    def __call__(self, path: Path) -> tuple[torch.nn.Module, torch.Tensor, dict]:
        """(the generator, its uint8 samples on the CPU, its scores: numbers only)."""
        generator = load_generator(path, self.device)
        cfg = generator.cfg
        z = noise(
            self.num_samples, cfg.latent_dim, generator.prior, seed=self.seed, device=self.device
        )
        generated = to_uint8(sample(generator, z, self.batch_size)).cpu()
        scores = {
            **self.evaluator(generated),
            **self.prdc(generated),
            **collapse_metrics(generated, self.heldout, self.seed),
        }
        return generator, generated, scores

    def row(self, step: int, scores: dict) -> dict:
        """A fidelity.csv row: the step, the scores, what they were scored with."""
        return {"step": step, **scores, **self.scoring}
