"""Compare <id>.png label maps of folder A with those of folder B over the ids both hold: pixel
agreement (255 included, and where both label), mIoU and per-class IoU over pixels neither labels
255, and the pixels each side leaves as 255 (e.g. our pseudo labels against the authors' released
refined_pseudo_segmentation_labels/)."""

from __future__ import annotations

import json

from drs.data.voc import read_class_names
from drs.labels.agreement import compare_labels
from drs.util.files import atomic_write_text, check_outside_dataset


def add_arguments(p) -> None:
    p.add_argument("a", metavar="A", help="folder of <id>.png labels (e.g. our pseudo labels)")
    p.add_argument("b", metavar="B", help="folder of <id>.png labels to compare with (e.g. the authors')")
    p.add_argument("--dataset", help="dataset folder whose class names to use (default: class indices)")
    p.add_argument("--out", help="write the result as JSON here")


def run(args) -> int:
    names = list(read_class_names(args.dataset)) if args.dataset else None
    result = compare_labels(args.a, args.b, names)
    if args.out:
        check_outside_dataset(args.out, args.dataset)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    only = (
        f"; {result['only_in_a']} only in A, {result['only_in_b']} only in B"
        if result["only_in_a"] or result["only_in_b"]
        else ""
    )
    print(
        f"{result['num_images']} images: {100 * result['pixel_agreement']:.1f}% of pixels agree "
        f"({100 * result['agreement_where_both_labelled']:.1f}% where both label), mIoU {result['miou']:.3f}; "
        f"255: {100 * result['ignored']['a_fraction']:.1f}% in A, {100 * result['ignored']['b_fraction']:.1f}% in B"
        + only
    )
    return 0
