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


def test_evaluate_flags_the_collapsed_checkpoint_in_its_csv_and_warns(
    tmp_path, tiny_arch, tiny_data
):
    """Through `evaluate_run`, as the stage calls it: a checkpoint whose generator draws one
    image for every z gets `collapsed` 1 and a warning naming its step; a varied one gets 0."""
    import csv

    import pytest

    from ugan.config.load import parse_params
    from ugan.core.checkpoint_io import save_checkpoint
    from ugan.core.paths import RunLayout
    from ugan.evaluation.evaluate import evaluate_run
    from ugan.nets.classifier import Classifier
    from ugan.nets.dcgan import Generator
    from ugan.nets.generator_file import generator_payload
    from ugan.tracking.stage_run import StageRun

    torch.manual_seed(0)
    layout = RunLayout(tmp_path / "runs" / "dcgan")
    one_image = Generator(tiny_arch)
    with torch.no_grad():
        for name, value in one_image.named_parameters():
            if "weight" in name and value.dim() > 1 and name.startswith("project"):
                value.zero_()  # z no longer reaches the image: the same picture for every z
    varied = Generator(tiny_arch)
    with torch.no_grad():
        for value in varied.parameters():
            if value.dim() > 1:
                value.normal_(0, 1.0)  # a saturated, wildly varied generator
    for step, generator in ((1, one_image), (2, varied)):
        save_checkpoint(layout.checkpoint_path(step), generator_payload(generator, step=step))
    layout.losses_csv.write_text("step,d_loss,g_loss\n1,1.0,1.0\n2,0.9,1.1\n")
    classifier = tmp_path / "classifier.pt"
    save_checkpoint(classifier, Classifier().to_payload())
    params = parse_params({"eval": {"num_samples": 64, "kid_subset_size": 16}})
    with StageRun("evaluate", {}, run_key="dcgan", log_models=False) as tracker:
        with pytest.warns(UserWarning, match="dcgan step 1: generator looks collapsed") as caught:
            evaluate_run(
                "dcgan",
                params.run("dcgan"),
                params.eval,
                tiny_data,
                classifier,
                tmp_path / "runs",
                tmp_path / "evaluation",
                tracker,
            )
    assert not any("step 2" in str(w.message) for w in caught)
    with open(tmp_path / "evaluation" / "fidelity.csv") as handle:
        flags = {int(r["step"]): float(r["collapsed"]) for r in csv.DictReader(handle)}
    assert flags == {1: 1.0, 2: 0.0}
