"""DeepLabV3+ (torchvision ResNet, ASPP, V3+ decoder) trained with cross-entropy (255 ignored) on a
folder of label PNGs, or on the dataset's masks with --labels ground-truth (the fully-supervised
reference). The config's `segmenter:` section comes as --settings. Resumes from OUT/last.pt."""

from __future__ import annotations

from drs.config.arguments import add_trainer_arguments, settings_from_args
from drs.config.settings import SegmenterSettings
from drs.training.segmenter import GROUND_TRUTH, train_segmenter


def add_arguments(p) -> None:
    add_trainer_arguments(p, SegmenterSettings)
    p.add_argument("--labels", required=True, help=f"folder of <id>.png labels, or '{GROUND_TRUTH}'")


def run(args) -> int:
    labels = None if args.labels == GROUND_TRUTH else args.labels
    train_segmenter(args.dataset, args.split, labels, args.out, settings_from_args(SegmenterSettings, args))
    return 0
