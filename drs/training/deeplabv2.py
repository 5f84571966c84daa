"""DeepLab-V2 trained on pseudo labels (or, for weak/full, ground truth), as the reference trains it.

The DRS authors' ``DeepLab-V2-PyTorch/train.py`` (from kazuto1011/deeplab-pytorch): the multi-scale
network (:mod:`drs.models.deeplabv2`) from the COCO DeepLab-V1 weights (the backbone; the ASPP keeps
its N(0, 0.01) start), batch norm frozen; batches of 5 with 2 accumulation steps for 20,000
iterations; SGD momentum 0.9 with the backbone convolutions at lr 2.5e-4, the ASPP weights at 10x
and its biases at 20x without weight decay (5e-4 for the others); poly decay (power 0.9) updated
every 10 iterations; crops of 321 after a random scale from 0.5-1.5 and a flip; caffe inputs. The
loss sums, over the four outputs (the full, half and three-quarter scale logits and their maximum),
the cross-entropy against the labels resized to the output by nearest neighbour (255 ignored) and
the cross-entropy against the output's own arg-max over the classes present in the image
(background included), which the reference takes as ``argmax(logits * present)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from drs.config.settings import DeepLabV2Settings
from drs.data.datasets import DeepLabV2Set
from drs.data.voc import IGNORE, VOCDataset
from drs.errors import UserError
from drs.models.deeplab import _cached_weights
from drs.models.deeplabv2 import DeepLabV2MSC, deeplabv2, reference_state, torchvision_resnet_state
from drs.models.weights_file import read_weights_file
from drs.training.scaffold import train
from drs.training.segmenter import labels_record

log = logging.getLogger("drs.deeplabv2")

COCO = "coco"  # pretrained: the authors' deeplabv1_resnet101-coco.pth, which the workflow downloads


def _read_state(path: Path) -> dict:
    state = read_weights_file(
        path, f"DeepLab-V2 initial weights {path}", unreadable="not a readable PyTorch state dict"
    )
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"DeepLab-V2 initial weights {path}: expected a state dict")
    return reference_state(state)


def load_initial_weights(model: DeepLabV2MSC, state: dict, source: str) -> dict:
    """Copy the tensors of ``state`` (the reference's names, without ``base.``) into the backbone,
    the reference's ``load_state_dict(strict=False)``: every network key the file lacks (the ASPP)
    is logged and keeps its initialisation, every file key the network lacks is logged and unused; a
    shape that does not fit is a UserError. Returns what was skipped."""
    own = model.base.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)}
    if shapes:
        key, shape = next(iter(shapes.items()))
        raise UserError(f"{source}: {key!r} has shape {shape}; the network needs {tuple(own[key].shape)}")
    skipped = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    for key in skipped:
        log.info("skip init: %s (not in %s)", key, source)
    for key in unused:
        log.info("unused: %s of %s", key, source)
    model.base.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {"skipped": skipped, "unused": unused}


def build_deeplabv2(num_classes: int, settings: DeepLabV2Settings) -> DeepLabV2MSC:
    """DeepLab-V2 as the settings describe, initialised from ``pretrained``: the COCO DeepLab-V1
    file (a path; "coco" names the file the workflow downloads), "imagenet" (torchvision's cached
    ResNet, with a warning: the paper's numbers need the COCO start) or "none"."""
    model = deeplabv2(num_classes, settings.backbone, settings.width, settings.atrous_rates, settings.msc_scales)
    pretrained = settings.pretrained
    if pretrained in ("none", ""):
        log.warning("DeepLab-V2 from random weights (pretrained: none); the paper's numbers need the COCO start")
        return model
    if pretrained == COCO:
        raise UserError(
            "config key 'deeplabv2.pretrained': coco names the authors' deeplabv1_resnet101-coco.pth, which "
            "the workflow downloads (weights.deeplabv1_coco); by hand, give the file's path"
        )
    if settings.width != 1:
        raise UserError(f"config key 'deeplabv2.pretrained': {pretrained} needs width 1, got {settings.width}")
    if pretrained == "imagenet":
        member = _cached_weights("resnet101" if settings.backbone == "resnet101" else "resnet50", "IMAGENET1K_V1")
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
        log.warning(
            "DeepLab-V2 from torchvision's ImageNet %s (%s): a fallback; the paper's numbers need the COCO "
            "DeepLab-V1 start (deeplabv2.pretrained: coco)",
            settings.backbone,
            path,
        )
        load_initial_weights(model, torchvision_resnet_state(_read_state(path)), str(path))
        return model
    load_initial_weights(model, _read_state(Path(pretrained)), pretrained)
    return model


def resize_labels(labels: torch.Tensor, size) -> torch.Tensor:
    """(N, H, W) labels resized to ``size`` by nearest neighbour at pixel centres (PIL's NEAREST,
    the reference's resize_labels)."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0].long()


def multi_output_loss(outputs, labels: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The reference's loss: over every output, cross-entropy against the labels resized to it
    (255 ignored) plus cross-entropy against ``argmax(output * present)``, its own arg-max over the
    image's classes (``present``: (N, C + 1) 0/1, background included)."""
    total = 0.0
    for logits in outputs:
        target = resize_labels(labels, logits.shape[-2:])
        own = (logits.detach() * present[:, :, None, None]).argmax(dim=1)
        total = total + F.cross_entropy(logits, target, ignore_index=IGNORE) + F.cross_entropy(logits, own)
    return total


def poly_every(settings: DeepLabV2Settings, loader_batches: int):
    """The reference's schedule (its PolynomialLR with step_size): ``iterations`` optimizer steps of
    ``accumulation`` loader batches each, lr x (1 - k / T)^power with k the step rounded down to a
    multiple of ``poly_every``."""
    steps_per_epoch = loader_batches // settings.accumulation
    if steps_per_epoch < 1:
        raise UserError(
            f"config key 'deeplabv2.accumulation': {settings.accumulation} loader batches a step, but the split "
            f"gives {loader_batches}; lower it or batch_size"
        )
    epochs, total = settings.schedule(steps_per_epoch)
    loop = replace(settings.loop, epochs=epochs, max_steps=total, accumulation=settings.accumulation)
    every, power = settings.poly_every, settings.poly_power

    def factor(step: int) -> float:
        return math.pow(1 - every * (step // every) / total, power)

    log.info("deeplabv2: %d steps of %d batches, poly every %d", total, settings.accumulation, every)
    return loop, {"lr_at_step": factor}


def deeplabv2_optimizer(model, settings: DeepLabV2Settings) -> torch.optim.SGD:
    """SGD over the reference's groups (backbone lr; ASPP weights 10x, biases 20x without decay)."""
    groups = model.parameter_groups(settings.lr, settings.weight_decay)
    return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)


def deeplabv2_loss(model, batch, device):
    """One batch's :func:`multi_output_loss` (the training loop's ``step_loss``)."""
    images, targets, present = (t.to(device, non_blocking=True) for t in batch)
    return multi_output_loss(model(images), targets, present)


def train_deeplabv2(
    dataset: str | Path,
    split: str,
    labels: str | Path | None,
    out_dir: str | Path,
    settings: DeepLabV2Settings,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    """Train on ``labels`` (a folder of label PNGs; None: the dataset's ground-truth masks)."""
    voc = VOCDataset(dataset, split)
    data = DeepLabV2Set(voc, labels, settings)

    record = labels_record(voc, dataset, labels)
    supervision = record["supervision"]
    return train(
        "segmenter",
        f"deeplabv2[{supervision}]",
        settings,
        out_dir,
        data,
        lambda: build_deeplabv2(len(voc.class_names), settings),
        lambda net: deeplabv2_optimizer(net, settings),
        deeplabv2_loss,
        record,
        schedule=poly_every,
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )
