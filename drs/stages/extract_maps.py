"""Multi-scale (optionally flipped) localization maps of the ground-truth classes, per-class
max-normalised, written to an HDF5 map store (see `drs inspect`). The config's `maps:` section comes
as --settings; --scales, --flip and --batch-size override its keys."""

from __future__ import annotations

import argparse

from drs.config.arguments import add_settings_argument, settings_from_args
from drs.config.settings import MapsSettings
from drs.inference.maps import extract_maps
from drs.util.argtypes import non_negative_int, positive_int


def add_arguments(p) -> None:
    p.add_argument(
        "--model", required=True, help="checkpoint: model.pt of train-classifier, or of train-refiner for refined maps"
    )
    p.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    p.add_argument("--split", default="train", help="id list (default: train)")
    p.add_argument("--out", required=True, help="store to write (.h5)")
    add_settings_argument(p, MapsSettings)
    hand = {"default": argparse.SUPPRESS}  # given by hand: overrides the key of --settings
    p.add_argument(
        "--scales",
        type=positive_int,
        nargs="+",
        help="override maps.scales: square input sizes, e.g. 256 320 384",
        **hand,
    )
    p.add_argument(
        "--flip", action="store_true", help="override maps.flip: also use horizontally flipped images", **hand
    )
    p.add_argument("--batch-size", type=positive_int, help="override maps.batch_size", **hand)
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="loader processes that decode and normalise images, and threads that compress maps "
        "(default: the torch threads (OMP_NUM_THREADS) within the usable cores, up to 8, none on "
        "one; the store is the same)",
    )


def run(args) -> int:
    settings = settings_from_args(MapsSettings, args)
    extract_maps(args.model, args.dataset, args.split, args.out, settings, workers=args.workers)
    return 0
