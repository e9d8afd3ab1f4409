"""Decoder → generator weight transfer (Unbalanced GAN, Algorithm 1: θ_Gen ← θ_Dec).

Strict: the two state dicts must have the same keys with the same shapes, or nothing is
loaded and the error names the first mismatch. After loading, G(z) must equal Dec(z)
on a fixed batch — the proof that the transfer is one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from ugan.core.errors import TransferError
from ugan.nets.dcgan import Generator


def check_compatible(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    """Raise `TransferError` naming the first key that is missing, extra or shaped differently."""
    for key in sorted(set(source) | set(target)):
        if key not in target:
            raise TransferError(f"decoder key {key!r} has no counterpart in the generator")
        if key not in source:
            raise TransferError(f"generator key {key!r} is missing from the decoder")
        if source[key].shape != target[key].shape:
            raise TransferError(
                f"shape mismatch at {key!r}: decoder {tuple(source[key].shape)} vs "
                f"generator {tuple(target[key].shape)}"
            )


def transfer_decoder(decoder_state: dict[str, torch.Tensor], generator: Generator) -> Generator:
    """Copy `decoder_state` into `generator` (all or nothing) and return it."""
    check_compatible(decoder_state, generator.state_dict())
    generator.load_state_dict(decoder_state, strict=True)
    return generator


@torch.no_grad()
def max_output_difference(a: nn.Module, b: nn.Module, latent_dim: int, seed: int = 0) -> float:
    """max |a(z) − b(z)| over a fixed batch of z, both nets in eval mode."""
    z = torch.randn(16, latent_dim, generator=torch.Generator().manual_seed(seed))
    classes = getattr(getattr(a, "cfg", None), "num_classes", 0)
    y = torch.arange(16) % classes if classes else None
    was_training = a.training, b.training
    a.eval()
    b.eval()
    try:
        return (a(z, y) - b(z, y)).abs().max().item()
    finally:
        a.train(was_training[0])
        b.train(was_training[1])
