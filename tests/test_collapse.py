import torch

from ugan.evaluation.collapse import collapse_metrics, pairwise_spread


def test_collapsed_generator_is_flagged_and_a_varied_one_is_not():
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (200, 1, 28, 28), generator=g, dtype=torch.uint8)
    one_image = real[:1].repeat(200, 1, 1, 1)
    jitter = torch.randint(0, 3, one_image.shape, generator=g, dtype=torch.uint8)
    collapsed = collapse_metrics(one_image.float() + jitter, real)
    assert collapsed["collapsed"] == 1.0 and collapsed["diversity_ratio"] < 0.05
    healthy = collapse_metrics(real.flip(0), real)
    assert healthy["collapsed"] == 0.0 and 0.9 < healthy["diversity_ratio"] < 1.1


def test_spread_by_hand():
    # Two images, 4 pixels: distance between all-0 and all-2 is sqrt(4·4) = 4 → per pixel 2.
    images = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0)])
    assert abs(pairwise_spread(images, num_pairs=10) - 2.0) < 1e-6
