"""Training the evaluation classifier on the train split; accuracy measured on held-out."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ugan.config.schema import ClassifierParams
from ugan.core.errors import AccuracyTooLow
from ugan.core.runtime import progress, seed_everything
from ugan.data.batches import InfiniteBatches
from ugan.data.prepared import PreparedData, to_float
from ugan.nets.classifier import Classifier
from ugan.tracking.stage_run import StageRun


@torch.no_grad()
def accuracy(model: Classifier, images, labels, device, batch_size: int = 500) -> float:
    model.eval()
    x_all = torch.as_tensor(images)
    y_all = torch.as_tensor(labels)
    correct = 0
    for start in range(0, len(x_all), batch_size):
        x = to_float(x_all[start : start + batch_size]).to(device)
        y = y_all[start : start + batch_size].to(device)
        correct += (model(x).argmax(1) == y).sum().item()
    return correct / max(1, len(x_all))


def train_classifier(
    params: ClassifierParams, data: PreparedData, tracker: StageRun, device: torch.device
) -> tuple[Classifier, dict]:
    seed_everything(params.seed)
    images, labels = data.train
    num_classes = int(data.metadata.get("num_classes", int(labels.max()) + 1))
    model = Classifier(channels=data.shape[0], num_classes=num_classes).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=params.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=params.steps)
    batches = InfiniteBatches(images, labels, params.batch_size, seed=params.seed, device=device)
    model.train()
    with progress(params.steps, "train_classifier") as bar:
        for step in range(1, params.steps + 1):
            x, y = batches.next()
            # Small random shifts: cheap augmentation that buys a point of held-out accuracy.
            x = torch.roll(x, shifts=tuple(torch.randint(-2, 3, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(x), y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            schedule.step()
            if step % 20 == 0 or step == params.steps:
                tracker.log_metrics({"train_loss": loss.item()}, step=step)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
    metrics = {
        "heldout_accuracy": accuracy(model, *data.heldout, device),
        "train_accuracy": accuracy(model, *data.train, device),
    }
    tracker.log_metrics(metrics)
    if metrics["heldout_accuracy"] < params.min_accuracy:
        raise AccuracyTooLow(
            f"classifier held-out accuracy {metrics['heldout_accuracy']:.3f} is below "
            f"classifier.min_accuracy {params.min_accuracy}: raise classifier.steps"
        )
    return model.cpu(), metrics
