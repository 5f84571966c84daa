"""Download, verify and extract PASCAL VOC 2012 + SBD SegmentationClassAug + saliency maps into a
VOC-layout folder (--archives; resumable, checksummed, published when complete), or one released
file such as DeepLab-V2's COCO start (--file, an entry of the config's `weights:`)."""

from __future__ import annotations

from pathlib import Path

from drs.data.download import download_file, load_archives_option, prepare_voc2012
from drs.errors import UserError
from drs.util.argtypes import non_negative_int
from drs.util.files import json_object


def add_arguments(p) -> None:
    p.add_argument("out", type=Path, help="dataset folder to create (must not exist), or with --file the file to write")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--archives",
        help="the voc2012.archives mapping as JSON text, or @path to a JSON/YAML file holding it",
    )
    what.add_argument("--file", metavar="JSON", help='one released file: {"url": ..., "md5": ...} (a weights: entry)')
    p.add_argument("--name", default="file", help="with --file: its name under the config's weights: (messages)")
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
    if args.file:
        if args.out.is_dir():
            raise UserError(f"{args.out}: is a folder; --file writes one file")
        print(download_file(args.out, json_object(args.file, "--file"), args.name, retries=args.retries))
        return 0
    archives = load_archives_option(args.archives)
    prepare_voc2012(args.out, archives, args.downloads, retries=args.retries)
    return 0
