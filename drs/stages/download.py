"""Download, verify and extract PASCAL VOC 2012 + SBD SegmentationClassAug + saliency maps into a
VOC-layout folder (resumable, checksummed, published when complete)."""

from __future__ import annotations

from pathlib import Path

from drs.data.download import load_archives_option, prepare_voc2012
from drs.util.argtypes import non_negative_int


def add_arguments(p) -> None:
    p.add_argument("out", type=Path, help="dataset folder to create (must not exist)")
    p.add_argument(
        "--archives",
        required=True,
        help="the voc2012.archives mapping as JSON text, or @path to a JSON/YAML file holding it",
    )
    p.add_argument(
        "--downloads",
        type=Path,
        default=Path("results/downloads"),
        help="folder for the downloaded archives (kept for reruns; default: %(default)s)",
    )
    p.add_argument(
        "--retries",
        type=non_negative_int,
        default=3,
        help="extra tries when a transfer is cut short (default: %(default)s)",
    )


def run(args) -> int:
    archives = load_archives_option(args.archives)
    prepare_voc2012(args.out, archives, args.downloads, retries=args.retries)
    return 0
