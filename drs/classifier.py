"""`drs train-classifier`: the VGG-16 classifier with DRS modules, trained on image-level labels.

Multi-label soft-margin loss; SGD (momentum 0.9, Nesterov) with the paper's parameter groups
(backbone weights lr, biases 2 lr; new layers and DRS controllers 10 lr, biases 20 lr), weight
decay 5e-4 and step decay (x0.1 at epochs 5 and 10 of 15). The result is ``OUT/model.pt``: the
state dict plus the model and training settings it was trained with.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

from drs.errors import UserError
from drs.fileio import json_object
from drs.settings import NetworkSettings

log = logging.getLogger("drs.classifier")



@dataclass
class ClassifierSettings(NetworkSettings):
    """Defaults are the paper's VOC settings; config.yaml scales them down for a CPU."""

    section: ClassVar[str] = "classifier"

    momentum: float = 0.9
    weight_decay: float = 0.0005


def build_classifier(num_classes: int, settings: NetworkSettings, drs: str, delta: float | None):
    from drs.models.vgg import drs_vgg16

    try:
        return drs_vgg16(
            num_classes,
            drs=drs,
            delta=delta,
            width=settings.width,
            batch_norm=settings.batch_norm,
            extra_batch_norm=settings.extra_batch_norm,
            stages=settings.stages,
            weights=settings.weights,
        )
    except ValueError as err:  # the builder names the value at fault
        raise UserError(f"{settings.section} settings: {err}") from None


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
    import torch
    import torch.nn.functional as F

    from drs.data.fingerprint import split_fingerprint
    from drs.data.torchdata import ClassificationSet, classification_transform
    from drs.data.voc import VOCDataset
    from drs.train import fit, save_model, seed_everything, step_decay

    out_dir = Path(out_dir)
    voc = VOCDataset(dataset, split)
    data = ClassificationSet(voc, classification_transform(settings.input_size, settings.crop_size))
    seed_everything(settings.seed)
    model = build_classifier(voc.num_classes, settings, drs, delta)
    optimizer = torch.optim.SGD(
        model.parameter_groups(settings.lr),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        nesterov=True,
    )
    loader = settings.loader(data)

    def step_loss(model, batch, device):
        images, targets = (t.to(device, non_blocking=True) for t in batch)
        return F.multilabel_soft_margin_loss(model(images), targets)

    record = {
        "kind": "classifier",
        "model_config": model.config,
        "settings": asdict(settings),
        "drs": drs,
        "delta": delta,
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": split,
        # the images and labels trained on: a rerun on changed data starts afresh (drs.data.fingerprint)
        "data_fingerprint": split_fingerprint(voc, ("images", "masks")).as_dict(),
    }
    log.info(
        "training the classifier (drs=%s%s) on %d images of %s/%s, %d epochs",
        drs,
        f", delta={delta}" if delta is not None else "",
        len(data),
        dataset,
        split,
        settings.epochs,
    )
    fit(
        model,
        optimizer,
        loader,
        step_loss,
        settings.loop,
        out_dir,
        lr_at_epoch=step_decay(settings.lr_decay_epochs),
        name=f"classifier[{drs}]",
        extra_state={"record": record},
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )
    return save_model(model, record, out_dir)


def load_classifier(path: str | Path, kinds: tuple[str, ...] = ("classifier",)):
    """(model in eval mode on the CPU, the checkpoint's record without its state dict) from a `model.pt`.

    ``kinds`` lists the accepted checkpoint kinds: "classifier" (train-classifier), "refiner"
    (train-refiner; the same network class without DRS modules).
    """
    from drs.models.vgg import DRSClassifier
    from drs.train import load_model

    return load_model(path, kinds, DRSClassifier)


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train the VGG-16 classifier with DRS modules on image-level labels",
        description="Train the classifier (VGG-16 with DRS modules, or none for the CAM baseline) on "
        "image-level labels derived from a VOC-layout dataset. Resumes from OUT/last.pt.",
    )
    p.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    p.add_argument("--split", default="train", help="id list to train on (default: train)")
    p.add_argument("--out", required=True, help="output folder (model.pt, last.pt)")
    p.add_argument("--drs", choices=["learnable", "fixed", "none"], default="learnable", help="DRS module kind")
    p.add_argument("--delta", type=float, help="suppression level of the fixed DRS module")
    p.add_argument("--settings", default="{}", help="training settings as JSON (the config's `classifier:` section)")
    p.add_argument("--seed", type=int, help="override the seed")
    p.set_defaults(func=_run)


def _run(args) -> int:
    values = json_object(args.settings, "--settings")
    if args.seed is not None:
        values["seed"] = args.seed
    settings = ClassifierSettings.from_dict(values)
    train_classifier(args.dataset, args.split, args.out, settings, args.drs, args.delta)
    return 0
