"""Localization-map refinement learning.

A second network, the classifier's VGG-16 with the same extra layers but no DRS module, outputs C
maps upsampled to its input size and learns, with a mean-squared error, to reproduce the
classifier's localization maps, where each pixel keeps only its arg-max class (the other classes
are 0 there). Its targets come from the classifier's HDF5 map store; the image and its target
share the geometric augmentation (resize, flip, crop), colour jitter touches the image only. Adam,
as in the paper. Its own multi-scale predictions (``drs extract-maps --model`` on its checkpoint)
are the refined maps.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from drs.config.settings import RefinerSettings
from drs.data.datasets import RefineSet
from drs.data.fingerprint import split_fingerprint
from drs.data.voc import VOCDataset
from drs.training.classifier import build_classifier
from drs.training.scaffold import train
from drs.util.files import file_sha256


def init_new_layers(model, how: str) -> None:
    """Re-initialise the refiner's new layers (extra convs and classifier) ``how`` (see RefinerSettings)."""
    if how == "he":
        return  # drs_vgg16's own initialisation
    with torch.no_grad():
        for part in (model.extra, model.classifier):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                    nn.init.zeros_(m.bias)


def refined_maps(model, images):
    """The refiner's C maps at the input's size."""
    return F.interpolate(model.class_maps(images), size=images.shape[-2:], mode="bilinear", align_corners=False)


def build_refiner(num_classes: int, settings: RefinerSettings):
    """The classifier's network without DRS, its new layers initialised as ``settings.new_layer_init``."""
    net = build_classifier(num_classes, settings, drs="none", delta=None)
    init_new_layers(net, settings.new_layer_init)
    return net


def refiner_optimizer(model, settings: RefinerSettings) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=settings.lr)


def refiner_loss(model, batch, device):
    """One batch's mean-squared error against the targets (the training loop's ``step_loss``)."""
    images, targets = (t.to(device, non_blocking=True) for t in batch)
    return F.mse_loss(refined_maps(model, images).float(), targets)


def train_refiner(
    dataset: str | Path,
    split: str,
    store: str | Path,
    out_dir: str | Path,
    settings: RefinerSettings,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    voc = VOCDataset(dataset, split)
    data = RefineSet(voc, store, settings.input_size, settings.crop_size, settings.random_crop)

    record = {
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": split,
        "targets": str(store),
        "targets_sha256": file_sha256(store),
        "data_fingerprint": split_fingerprint(voc, ("images",)).as_dict(),  # a rerun on changed data starts afresh
    }
    return train(
        "refiner",
        "refiner",
        settings,
        out_dir,
        data,
        lambda: build_refiner(voc.num_classes, settings),
        lambda net: refiner_optimizer(net, settings),
        refiner_loss,
        record,
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )
