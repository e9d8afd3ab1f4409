"""The evaluation network: a small CNN classifier whose features and logits stand in for
Inception's in IS / FID / KID (no Inception weights can be downloaded here).

Its `objective` says what it was trained to predict: "labels" (the classes of labelled data) or
"rotation" (which of 4 quarter turns an image was given: unlabelled data, Gidaris et al. 2018).
Only a "labels" network's posteriors are class posteriors, so only it gives an Inception Score.

Its features keep a coarse `grid` × `grid` map of where the strokes are (max-pooled, then one
linear layer to 128): averaging the last feature map over the whole image (`grid` 1, the net
before issue 17) threw that layout away and held MNIST held-out accuracy near 96 %; the 3 × 3
map (with the augmentation of `ugan.training.classifier`) reaches ~99 %. A checkpoint written
without `grid` is the older net and loads as one."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ugan.core.checkpoint_io import load_checkpoint

FEATURE_DIM = 128
GRID = 3  # the last feature map is max-pooled to GRID × GRID before the feature layer
OBJECTIVES = ("labels", "rotation")
ROTATIONS = 4  # 0°, 90°, 180°, 270°: the classes of the "rotation" objective


class Classifier(nn.Module):
    """image (N, C, H, W) in [-1, 1] → logits (N, num_classes); `features` gives (N, 128)."""

    def __init__(
        self,
        channels: int = 1,
        num_classes: int = 10,
        objective: str = "labels",
        grid: int = GRID,
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if objective == "rotation" and num_classes != ROTATIONS:
            raise ValueError(f"a rotation classifier has {ROTATIONS} classes, got {num_classes}")
        if grid < 1:
            raise ValueError(f"grid must be at least 1, got {grid}")
        self.channels = channels
        self.num_classes = num_classes
        self.objective = objective
        self.grid = grid
        # grid 1: the global average of the older net (its checkpoints load unchanged).
        pool = nn.AdaptiveAvgPool2d(1) if grid == 1 else nn.AdaptiveMaxPool2d(grid)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),  # (N,32,H,W)
            nn.MaxPool2d(2),  # (N,32,H/2,W/2)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),  # (N,64,H/2,W/2)
            nn.MaxPool2d(2),  # (N,64,H/4,W/4)
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),  # (N,128,H/4,W/4)
            pool,  # (N,128,grid,grid)
            nn.Flatten(),  # (N,128·grid²)
            nn.Dropout(0.3),
            nn.Linear(128 * grid * grid, FEATURE_DIM),
            nn.ReLU(),  # (N,128)
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def for_inference(self) -> Classifier:
        """A frozen eval-mode copy for scoring only: each batch norm folded into the conv before it
        (torch's `fuse_conv_bn_eval`; the norm's slot becomes an identity, so indices and
        `features` stay) and the weights channels_last (a conv then runs channels_last whatever
        its input's layout). On the CPU it reads digits ~2x faster
        (`benchmarks/stacked_labeller.py`); its logits equal this net's up to float rounding.
        This net is left as it is."""
        fused = copy.deepcopy(self).eval()
        layers = fused.body
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                layers[i] = fuse_conv_bn_eval(layers[i], layers[i + 1])
                layers[i + 1] = nn.Identity()
        return fused.to(memory_format=torch.channels_last).requires_grad_(False)

    def to_payload(self, **extra) -> dict:
        return {
            "state_dict": self.state_dict(),
            "config": {
                "channels": self.channels,
                "num_classes": self.num_classes,
                "objective": self.objective,
                "grid": self.grid,
            },
            **extra,
        }


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Rebuild a classifier from a checkpoint written with `Classifier.to_payload` (one written
    before objectives existed was trained on labels; one written before `grid` existed is the
    global-average net, grid 1)."""
    payload = load_checkpoint(path, map_location=device)
    model = Classifier(**{"grid": 1, **payload["config"]})
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
