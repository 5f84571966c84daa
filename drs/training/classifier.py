"""The VGG-16 classifier with DRS modules, trained on image-level labels (``drs train-classifier``).

Multi-label soft-margin loss; SGD (momentum 0.9, Nesterov) with the paper's parameter groups
(backbone weights lr, biases 2 lr; new layers and DRS controllers 10 lr, biases 20 lr), weight
decay 5e-4 and step decay (x0.1 at epochs 5 and 10 of 15). The result is ``OUT/model.pt``: the
state dict plus the model and training settings it was trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from drs.config.settings import ClassifierSettings, NetworkSettings
from drs.data.datasets import ClassificationSet
from drs.data.fingerprint import split_fingerprint
from drs.data.transforms import classification_transform
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.models.vgg import drs_vgg16
from drs.training.scaffold import train


def build_classifier(num_classes: int, settings: NetworkSettings, drs: str, delta: float | None):
    try:
        model = drs_vgg16(
            num_classes,
            drs=drs,
            delta=delta,
            width=settings.width,
            batch_norm=settings.batch_norm,
            extra_batch_norm=settings.extra_batch_norm,
            norm=settings.norm,
            stages=settings.stages,
            weights=settings.weights,
        )
    except ValueError as err:  # the builder names the value at fault
        raise UserError(f"{settings.section} settings: {err}") from None
    model.freeze_batch_norm = bool(getattr(settings, "freeze_batch_norm", False))
    return model


def classifier_optimizer(model, settings: ClassifierSettings) -> torch.optim.SGD:
    """SGD (Nesterov) over the paper's parameter groups."""
    groups = model.parameter_groups(settings.lr)
    return torch.optim.SGD(
        groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay, nesterov=True
    )


def classifier_loss(model, batch, device):
    """One batch's multi-label soft-margin loss (the training loop's ``step_loss``)."""
    images, targets = (t.to(device, non_blocking=True) for t in batch)
    return F.multilabel_soft_margin_loss(model(images), targets)


def train_classifier(
    dataset: str | Path,
    split: str,
    out_dir: str | Path,
    settings: ClassifierSettings,
    drs: str,
    delta: float | None = None,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    voc = VOCDataset(dataset, split)
    data = ClassificationSet(voc, classification_transform(settings.input_size, settings.crop_size))

    record = {
        "drs": drs,
        "delta": delta,
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": split,
        # the images and labels trained on: a rerun on changed data starts afresh (drs.data.fingerprint)
        "data_fingerprint": split_fingerprint(voc, ("images", "masks")).as_dict(),
    }
    return train(
        "classifier",
        f"classifier[{drs}]",
        settings,
        out_dir,
        data,
        lambda: build_classifier(voc.num_classes, settings, drs, delta),
        lambda net: classifier_optimizer(net, settings),
        classifier_loss,
        record,
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )
