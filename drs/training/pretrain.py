"""Pretrain the classifier's network on the embedded corpus, fold its batch
norm, and write the result as a weights file for the classifier's ``pretrained:`` key.

The paper fine-tunes an ImageNet VGG-16 (no batch norm). On the synthetic set the project makes its
own: the CAM network (no DRS) is trained from scratch, with batch norm, on `drs corpus`'s outline x
texture classes (no part cue), then batch norm is folded into the convolutions
(:mod:`drs.models.fold`) so that fine-tuning runs without it, as on the real VGG-16. With ``--extra``
the three extra convolutions are kept too (otherwise they are new, as in the paper).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from drs.models.fold import backbone_state_dict, fold_batch_norm
from drs.store.model_files import load_classifier
from drs.training.classifier import train_classifier


def pretrain_backbone(corpus: str | Path, out: str | Path, settings, extra: bool = False) -> Path:
    """Train on ``corpus`` (split train) into ``<out>.work/``, fold, write ``out``."""
    out = Path(out)
    work = out.with_name(out.name + ".work")
    model_pt = train_classifier(corpus, "train", work, settings, "none")
    return save_folded_backbone(model_pt, out, extra=extra)


def save_folded_backbone(model_pt: str | os.PathLike, out: str | os.PathLike, extra: bool = False) -> Path:
    """Load a train-classifier ``model.pt``, fold its batch norm, write its backbone (and with
    ``extra`` its extra layers) as a torchvision-format state dict (the classifier's ``pretrained:``
    path). Returns ``out``."""
    model, _record = load_classifier(model_pt)
    folded = fold_batch_norm(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(backbone_state_dict(folded, extra=extra), tmp)
    os.replace(tmp, out)
    return out
