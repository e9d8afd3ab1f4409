"""The evaluation classifier (issue 17): its training augmentation, its accuracy floor, and the
3 × 3 feature grid next to the older global-average checkpoints it still loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ugan.config.load import parse_params
from ugan.config.schema import ClassifierParams
from ugan.core.checkpoint_io import save_checkpoint
from ugan.core.errors import AccuracyTooLow
from ugan.nets.classifier import FEATURE_DIM, GRID, Classifier, load_classifier
from ugan.training.classifier import MAX_SHIFT, augment, train_classifier

ROOT = Path(__file__).resolve().parents[1]


class _Tracker:
    def log_metrics(self, metrics, step=None):
        pass


def _digit_like(n: int = 16, size: int = 28) -> torch.Tensor:
    """Black images (-1) with a white bar near the centre, in the model's [-1, 1] range."""
    x = torch.full((n, 1, size, size), -1.0)
    x[:, :, size // 2 - 6 : size // 2 + 6, size // 2 - 2 : size // 2 + 2] = 1.0
    return x


def _centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) → (N, 2) row / column centre of the ink ((x + 1) / 2)."""
    ink = (x[:, 0] + 1) / 2
    coords = torch.arange(x.shape[-1], dtype=x.dtype)
    total = ink.sum((1, 2))
    return torch.stack(
        [(ink.sum(2) * coords).sum(1) / total, (ink.sum(1) * coords).sum(1) / total], 1
    )


def test_augment_keeps_shape_and_is_repeatable_with_its_seed():
    x = _digit_like()
    first = augment(x, torch.Generator().manual_seed(7))
    again = augment(x, torch.Generator().manual_seed(7))
    other = augment(x, torch.Generator().manual_seed(8))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, x)  # it does change the images…
    # …each its own way (one draw per image, not one per batch)
    assert len({tuple(row.flatten().tolist()) for row in first}) == len(x)


def test_augment_keeps_the_background_and_the_digit_in_place():
    x = _digit_like(64)
    out = augment(x, torch.Generator().manual_seed(0))
    # Pixels pulled in from outside the image repeat its border: black stays black (zero
    # padding would bring in grey, 0 in [-1, 1]).
    blank = augment(torch.full((4, 1, 28, 28), -1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(blank, torch.full_like(blank, -1.0), atol=1e-5)
    assert out.min() >= -1.0 - 1e-6 and out.max() <= 1.0 + 1e-6
    # A small shift: the ink's centre moves by at most MAX_SHIFT of the side (plus what
    # rotation and scale about the centre add, here nothing: the bar sits at the centre).
    moved = (_centre_of_mass(out) - _centre_of_mass(x)).abs().max()
    assert 0.1 < moved <= MAX_SHIFT * 28 + 0.5
    # and the ink itself stays (scale ±10 %: the area changes by at most ~21 %)
    ink_before, ink_after = ((x + 1) / 2).sum((1, 2, 3)), ((out + 1) / 2).sum((1, 2, 3))
    assert ((ink_after / ink_before - 1).abs() < 0.3).all()


def test_training_is_repeatable_with_the_seed(tiny_data):
    params = parse_params({"classifier": {"steps": 3, "batch_size": 16, "min_accuracy": 0.0}})
    first, _ = train_classifier(params.classifier, tiny_data, _Tracker(), torch.device("cpu"))
    again, _ = train_classifier(params.classifier, tiny_data, _Tracker(), torch.device("cpu"))
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_the_floor_is_098_by_default_and_its_error_names_the_key(tiny_data):
    assert ClassifierParams().min_accuracy == 0.98
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["classifier"]["min_accuracy"]
    assert shipped == 0.98
    params = parse_params({"classifier": {"steps": 2, "batch_size": 16}}).classifier
    with pytest.raises(AccuracyTooLow, match=r"below classifier\.min_accuracy 0\.98"):
        train_classifier(params, tiny_data, _Tracker(), torch.device("cpu"))  # random labels


@pytest.mark.parametrize("size", [28, 32, 64])
def test_features_stay_128_dimensional_at_every_image_size(size):
    model = Classifier(channels=3, grid=GRID).eval()
    x = torch.zeros(2, 3, size, size)
    assert model.features(x).shape == (2, FEATURE_DIM)
    assert model(x).shape == (2, 10)


def test_a_checkpoint_without_grid_is_the_older_global_average_net(tmp_path):
    torch.manual_seed(0)
    older = Classifier(grid=1).eval()
    payload = older.to_payload()
    del payload["config"]["grid"]  # as the net before issue 17 wrote it
    save_checkpoint(tmp_path / "old.pt", payload)
    loaded = load_classifier(tmp_path / "old.pt")
    assert loaded.grid == 1
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.equal(loaded.features(x), older.features(x))

    current = Classifier().eval()
    save_checkpoint(tmp_path / "new.pt", current.to_payload())
    reloaded = load_classifier(tmp_path / "new.pt")
    assert reloaded.grid == GRID == 3
    assert torch.equal(reloaded(x), current(x))


def test_the_inference_copy_folds_batch_norm_and_gives_the_same_logits():
    """`for_inference` (the Stacked MNIST labeller's net): batch norm with trained-looking
    statistics folded into the convs; logits and features equal the net's up to rounding, the
    same labels through `classifier_labeller`, and the net itself keeps its norms."""
    from ugan.evaluation.modes import classifier_labeller

    torch.manual_seed(0)
    model = Classifier(channels=1, num_classes=10)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:  # what training leaves: far from the identity a fresh norm is
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.2, 3.0)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    fused = model.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == len(norms) == 3
    assert not any(p.requires_grad for p in fused.parameters())
    x = _digit_like(8) + 0.3 * torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-4)
        assert torch.allclose(fused.features(x), model.features(x), atol=1e-4)
        assert not torch.allclose(fused(x), Classifier(channels=1, num_classes=10).eval()(x))
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8).numpy()
    assert (classifier_labeller(fused)(images) == classifier_labeller(model)(images)).all()
