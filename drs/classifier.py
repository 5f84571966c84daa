"""`drs train-classifier`: the VGG-16 classifier with DRS modules, trained on image-level labels.

Multi-label soft-margin loss; SGD (momentum 0.9, Nesterov) with the paper's parameter groups
(backbone weights lr, biases 2 lr; new layers and DRS controllers 10 lr, biases 20 lr), weight
decay 5e-4 and step decay (x0.1 at epochs 5 and 10 of 15). The result is ``OUT/model.pt``: the
state dict plus the model and training settings it was trained with.
"""

from __future__ import annotations

from pathlib import Path

from drs.settings import NetworkSettings, add_trainer_arguments, section, settings_from_args


@section("classifier")
class ClassifierSettings(NetworkSettings):
    """The schema's defaults are the paper's VOC settings; config.yaml scales them down for a CPU."""

    momentum: float
    weight_decay: float
    freeze_batch_norm: bool  # batch norm in eval mode while training (running statistics kept)


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

    from drs.data.datasets import ClassificationSet
    from drs.data.fingerprint import split_fingerprint
    from drs.data.transforms import classification_transform
    from drs.data.voc import VOCDataset
    from drs.models.vgg import build_classifier
    from drs.train import train

    voc = VOCDataset(dataset, split)
    data = ClassificationSet(voc, classification_transform(settings.input_size, settings.crop_size))

    def optimizer(model):
        groups = model.parameter_groups(settings.lr)
        return torch.optim.SGD(
            groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay, nesterov=True
        )

    def step_loss(model, batch, device):
        images, targets = (t.to(device, non_blocking=True) for t in batch)
        return F.multilabel_soft_margin_loss(model(images), targets)

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
        optimizer,
        step_loss,
        record,
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
    )


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
    add_trainer_arguments(p, ClassifierSettings)
    p.add_argument("--drs", choices=["learnable", "fixed", "none"], default="learnable", help="DRS module kind")
    p.add_argument("--delta", type=float, help="suppression level of the fixed DRS module")
    p.set_defaults(func=_run)


def _run(args) -> int:
    settings = settings_from_args(ClassifierSettings, args)
    train_classifier(args.dataset, args.split, args.out, settings, args.drs, args.delta)
    return 0
