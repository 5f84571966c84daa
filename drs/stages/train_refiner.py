"""Localization-map refinement learning: a VGG-16 without DRS learns (MSE) to reproduce the
classifier's maps, each pixel keeping only its arg-max class. The config's `refiner:` section comes
as --settings. Resumes from OUT/last.pt."""

from __future__ import annotations

from drs.config.arguments import add_trainer_arguments, settings_from_args
from drs.config.settings import RefinerSettings
from drs.training.history import use_tensorboard
from drs.training.refiner import train_refiner


def add_arguments(p) -> None:
    add_trainer_arguments(p, RefinerSettings)
    p.add_argument("--store", required=True, help="the classifier's map store of that split (targets)")


def run(args) -> int:
    use_tensorboard(args.tensorboard)
    settings = settings_from_args(RefinerSettings, args)
    train_refiner(args.dataset, args.split, args.store, args.out, settings)
    return 0
