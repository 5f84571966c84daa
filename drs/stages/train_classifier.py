"""Train the classifier (VGG-16 with DRS modules, or none for the CAM baseline) on image-level labels
derived from a VOC-layout dataset. The config's `classifier:` section comes as --settings. Resumes
from OUT/last.pt."""

from __future__ import annotations

from drs.config.arguments import add_trainer_arguments, settings_from_args
from drs.config.settings import ClassifierSettings
from drs.training.classifier import train_classifier
from drs.training.history import use_tensorboard


def add_arguments(p) -> None:
    add_trainer_arguments(p, ClassifierSettings)
    p.add_argument("--drs", choices=["learnable", "fixed", "none"], default="learnable", help="DRS module kind")
    p.add_argument("--delta", type=float, help="suppression level of the fixed DRS module")


def run(args) -> int:
    use_tensorboard(args.tensorboard)
    settings = settings_from_args(ClassifierSettings, args)
    train_classifier(args.dataset, args.split, args.out, settings, args.drs, args.delta)
    return 0
