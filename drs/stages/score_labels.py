"""Score <id>.png of every image of a split against its ground-truth mask: mIoU, pixel accuracy,
per-class IoU; pixels labelled 255 are left out and counted (ignored fraction). With --store (the map
store the labels came from) also the reference's scoring of that store, with the rule's settings
(the config's `pseudo_labels:` section as --settings)."""

from __future__ import annotations

import json

from drs.config.arguments import add_rule_arguments, rule_settings
from drs.labels.scoring import score_labels, with_protocols
from drs.util.files import atomic_write_text, check_outside_dataset


def add_arguments(p) -> None:
    p.add_argument("labels", help="folder of <id>.png label maps")
    p.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    p.add_argument("--split", required=True, help="split whose images are scored")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--store", help="map store the labels came from: also score it the reference's way")
    add_rule_arguments(p)


def run(args) -> int:
    if args.out:
        check_outside_dataset(args.out, args.dataset)
    scored = score_labels(args.labels, args.dataset, args.split)
    result = with_protocols(scored, rule_settings(args), args.dataset, args.store)
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(
        f"{result['num_images']} images: mIoU {result['miou']:.3f}, pixel accuracy {result['pixel_accuracy']:.3f}, "
        f"{100 * result['ignored_fraction']:.1f}% of pixels ignored"
    )
    return 0
