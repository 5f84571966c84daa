"""`drs score-labels`: score a folder of label PNGs against the ground truth (``refined.json``).

Every ``<labels>/<id>.png`` of a split against its ground-truth mask: mIoU, pixel accuracy,
per-class IoU; pixels labelled 255 are left out of the confusion matrix and counted
(``ignored_fraction``). With ``--store`` (the map store the labels came from) the result also
carries the reference's scoring protocol (:mod:`drs.protocol`), with the rule's settings (the
config's ``pseudo_labels`` section).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drs.data.voc import IGNORE
from drs.errors import UserError
from drs.fileio import atomic_write_text, check_outside_dataset


def score_labels(label_dir: str | Path, dataset: str | Path, split: str) -> dict:
    """Score every ``label_dir/<id>.png`` of the split against its ground-truth mask.

    Pixels labelled 255 are left out of the confusion matrix and counted (``ignored_fraction``).
    """
    from drs.data.voc import VOCDataset, check_label_values, read_label_png
    from drs.metrics import SegmentationScore

    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: label folder not found")
    voc = VOCDataset(dataset, split)
    names = list(voc.class_names)
    score = SegmentationScore(len(names))
    for image_id in voc.ids:
        path = label_dir / f"{image_id}.png"
        if not path.exists():
            raise UserError(f"{path}: label not found (listed in {split}.txt of {dataset})")
        label = check_label_values(read_label_png(path), voc.num_classes, path)
        mask = voc.load_mask(image_id)
        if label.shape != mask.shape:
            raise UserError(
                f"{path}: label is {label.shape[0]}x{label.shape[1]} but mask {voc.mask_path(image_id)} is "
                f"{mask.shape[0]}x{mask.shape[1]}"
            )
        bad = np.unique(label[(label >= len(names)) & (label != IGNORE)])
        if bad.size:
            raise UserError(f"{path}: label values {bad.tolist()} out of range (0..{len(names) - 1} or {IGNORE})")
        try:
            score.add(label, mask)
        except ValueError as err:
            raise UserError(f"{voc.mask_path(image_id)}: {err}") from None
    result = score.result(names)
    result.update(split=split, labels=str(label_dir), dataset=str(dataset))
    return result


# -- command line ------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    from drs.pseudo_labels import add_rule_arguments

    s = sub.add_parser(
        "score-labels",
        help="score a folder of label PNGs against the ground truth (mIoU)",
        description="Score <id>.png of every image of a split against its ground-truth mask: mIoU, pixel "
        "accuracy, per-class IoU; pixels labelled 255 are left out and counted (ignored fraction).",
    )
    s.add_argument("labels", help="folder of <id>.png label maps")
    s.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    s.add_argument("--split", required=True, help="split whose images are scored")
    s.add_argument("--out", help="write the metrics JSON here")
    s.add_argument("--store", help="map store the labels came from: also score it the reference's way")
    add_rule_arguments(s)
    s.set_defaults(func=_run)


def _run(args) -> int:
    from drs import protocol
    from drs.pseudo_labels import rule_settings

    if args.out:
        check_outside_dataset(args.out, args.dataset)
    result = protocol.apply(
        score_labels(args.labels, args.dataset, args.split), rule_settings(args), args.dataset, args.store
    )
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(
        f"{result['num_images']} images: mIoU {result['miou']:.3f}, pixel accuracy {result['pixel_accuracy']:.3f}, "
        f"{100 * result['ignored_fraction']:.1f}% of pixels ignored"
    )
    return 0
