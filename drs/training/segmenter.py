"""DeepLabV3+ trained on pseudo labels (or, for the reference, ground truth).

Stage 6. The labels are palette PNGs (``<labels>/<id>.png``, 255 = ignore): the pseudo labels of
stage 5, or the dataset's own masks for the fully-supervised reference run. Cross-entropy ignoring
255; SGD (momentum 0.9) with the backbone at ``lr`` and the head (ASPP, projection, classifier) at 10
``lr``, poly decay (power 0.9) per iteration (or per epoch); augmentation as the reference's:
random rescale, flip, random crop padded with 255 (the reference pads labels with 0), optional
colour jitter. The shared loop (drs.training.loop.fit) brings the device choice, AMP on
CUDA, checkpoints every epoch and resumption. The result is ``OUT/model.pt``: state dict plus the
network and training settings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from drs.config.settings import SegmenterSettings
from drs.data.datasets import SegmentationSet
from drs.data.fingerprint import split_fingerprint
from drs.data.voc import IGNORE, VOCDataset
from drs.models.deeplab import deeplabv3plus, load_backbone_file
from drs.training.scaffold import train
from drs.training.schedules import poly_schedule
from drs.training.validation import BestOnVal

log = logging.getLogger("drs.segmenter")
GROUND_TRUTH = "ground-truth"


def build_segmenter(num_classes: int, settings: SegmenterSettings):
    """DeepLabV3+ as the settings describe; ``pretrained`` is none, imagenet or a ResNet weights file."""
    weights = settings.weights
    path = None
    if weights is not None and weights != "imagenet":
        path, weights = Path(weights), None
    model = deeplabv3plus(
        num_classes,
        backbone=settings.backbone,
        output_stride=settings.output_stride,
        width=settings.width,
        weights_backbone="IMAGENET1K_V1" if weights == "imagenet" else None,
    )
    if path is not None:
        load_backbone_file(model, path)
    return model


def segmenter_optimizer(model, settings: SegmenterSettings) -> torch.optim.SGD:
    """SGD with the backbone at ``lr`` and the head at 10 ``lr``."""
    groups = model.parameter_groups(settings.lr)
    return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def segmenter_loss(model, batch, device):
    """One batch's cross-entropy (255 ignored) as a sum and a pixel count: under torchrun the loop
    divides by the count over all processes, so each labelled pixel weighs the same as in one process."""
    images, targets = (t.to(device, non_blocking=True) for t in batch)
    loss = F.cross_entropy(model(images), targets, ignore_index=IGNORE, reduction="sum")
    return loss, (targets != IGNORE).sum()


def labels_record(voc: VOCDataset, dataset: str | Path, labels: str | Path | None) -> dict:
    """What a segmenter's ``model.pt`` records of its training data (both architectures): classes,
    split, labels (a folder, or ground truth), supervision and the data's fingerprint."""
    return {
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": voc.split,
        "labels": GROUND_TRUTH if labels is None else str(labels),
        "supervision": "full" if labels is None else "image",
        # the images and labels trained on: a rerun on changed data starts afresh (drs.data.fingerprint)
        "data_fingerprint": (
            split_fingerprint(voc, ("images", "masks"))
            if labels is None
            else split_fingerprint(voc, ("images", "labels"), label_dir=labels)
        ).as_dict(),
    }


def train_segmenter(
    dataset: str | Path,
    split: str,
    labels: str | Path | None,
    out_dir: str | Path,
    settings: SegmenterSettings,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    """Train on ``labels`` (a folder of label PNGs; None: the dataset's ground-truth masks)."""
    voc = VOCDataset(dataset, split)
    data = SegmentationSet(voc, labels, settings)
    record = labels_record(voc, dataset, labels)
    supervision = record["supervision"]
    best = None
    if settings.val_every:
        val = VOCDataset(dataset, settings.val_split)
        best = lambda model, record: BestOnVal(model, record, out_dir, settings, val)  # noqa: E731
    return train(
        "segmenter",
        f"segmenter[{supervision}]",
        settings,
        out_dir,
        data,
        lambda: build_segmenter(len(voc.class_names), settings),
        lambda net: segmenter_optimizer(net, settings),
        segmenter_loss,
        record,
        schedule=poly_schedule,
        after_step=best,
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )
