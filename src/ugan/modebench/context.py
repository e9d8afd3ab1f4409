"""What every part of one mode-coverage benchmark run reads: its entry, where it writes, where
it is tracked and on which device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ugan.config.schema import ModeBenchmarkParams, ModelParams
from ugan.modebench.benchmarks import Benchmark, Inputs, get_benchmark


@dataclass(frozen=True)
class Context:
    name: str  # the benchmark entry's key in `modes:`
    entry: ModeBenchmarkParams
    model: ModelParams
    inputs: Inputs
    out: Path
    experiment: str = "ugan"
    device: torch.device | str = "cpu"

    @property
    def bench(self) -> Benchmark:
        return get_benchmark(self.entry.benchmark).bound(self.entry)
