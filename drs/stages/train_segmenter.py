"""The segmenter trained on a folder of label PNGs, or on the dataset's masks with --labels
ground-truth (the fully-supervised reference): DeepLabV3+ (torchvision ResNet, ASPP, V3+ decoder;
the config's `segmenter:` section as --settings) or, with --architecture deeplabv2, DeepLab-V2 as
the DRS authors train it (caffe ResNet-101, ASPP sum, multi-scale inputs, frozen batch norm; the
config's `deeplabv2:` section). Resumes from OUT/last.pt."""

from __future__ import annotations

from drs.config.arguments import add_trainer_arguments, settings_from_args
from drs.config.settings import ARCHITECTURES, SegmenterSettings
from drs.training.deeplabv2 import train_deeplabv2
from drs.training.history import use_tensorboard
from drs.training.segmenter import GROUND_TRUTH, train_segmenter

TRAINERS = {"deeplabv3plus": train_segmenter, "deeplabv2": train_deeplabv2}


def add_arguments(p) -> None:
    add_trainer_arguments(p, SegmenterSettings)
    p.add_argument("--labels", required=True, help=f"folder of <id>.png labels, or '{GROUND_TRUTH}'")
    p.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        default="deeplabv3plus",
        help="the network: deeplabv3plus (--settings: the segmenter section) or deeplabv2 (the deeplabv2 section)",
    )


def run(args) -> int:
    use_tensorboard(args.tensorboard)
    labels = None if args.labels == GROUND_TRUTH else args.labels
    settings = settings_from_args(ARCHITECTURES[args.architecture], args)
    TRAINERS[args.architecture](args.dataset, args.split, labels, args.out, settings)
    return 0
