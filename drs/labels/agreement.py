"""How far one folder of label PNGs is from another.

For checking our pseudo labels against the authors' released ones
(``refined_pseudo_segmentation_labels/``), or any two label sets: over the images both folders
hold (``<id>.png``), a joint histogram of (A, B) label values gives

* ``pixel_agreement``: the share of all pixels where A and B hold the same value (255 included);
* ``agreement_where_both_labelled``: the same over pixels neither labels 255;
* ``miou`` and ``per_class_iou``: IoU of A against B per class, over pixels neither labels 255
  (B plays the ground truth; IoU is symmetric);
* ``ignored``: pixels A labels 255, B labels 255, both, and their fractions.

Images found in only one folder are counted and listed (the first few); different sizes are an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drs.data.voc import IGNORE, read_label_png
from drs.errors import UserError


def _ids(folder: Path) -> set[str]:
    if not folder.is_dir():
        raise UserError(f"{folder}: label folder not found")
    return {p.stem for p in folder.glob("*.png")}


def compare_labels(a: str | Path, b: str | Path, class_names: list[str] | None = None) -> dict:
    """Agreement of label folder ``a`` with ``b`` (see the module docstring)."""
    a, b = Path(a), Path(b)
    ids_a, ids_b = _ids(a), _ids(b)
    common = sorted(ids_a & ids_b)
    if not common:
        raise UserError(f"{a} and {b}: no <id>.png in common ({len(ids_a)} and {len(ids_b)} PNGs)")
    joint = np.zeros((256, 256), dtype=np.int64)
    for image_id in common:
        la, lb = read_label_png(a / f"{image_id}.png"), read_label_png(b / f"{image_id}.png")
        if la.shape != lb.shape:
            raise UserError(
                f"{a / f'{image_id}.png'}: label is {la.shape[0]}x{la.shape[1]} but {b / f'{image_id}.png'} is "
                f"{lb.shape[0]}x{lb.shape[1]}"
            )
        joint += np.bincount(la.astype(np.int64).ravel() * 256 + lb.ravel(), minlength=256 * 256).reshape(256, 256)
    total = int(joint.sum())
    labelled = joint[:IGNORE, :IGNORE]
    used = np.flatnonzero(labelled.sum(0) + labelled.sum(1))
    num = max(int(used.max()) + 1 if used.size else 1, len(class_names) if class_names else 0)
    if class_names is not None and num > len(class_names):
        raise UserError(f"{a}, {b}: label value {num - 1} beyond the {len(class_names)} classes {class_names}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num)]
    m = labelled[:num, :num]
    tp = np.diag(m).astype(np.float64)
    union = m.sum(0) + m.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    ignored_a = int(joint[IGNORE, :].sum())
    ignored_b = int(joint[:, IGNORE].sum())
    ignored_both = int(joint[IGNORE, IGNORE])
    both_labelled = int(labelled.sum())
    return {
        "a": str(a),
        "b": str(b),
        "num_images": len(common),
        "only_in_a": len(ids_a - ids_b),
        "only_in_b": len(ids_b - ids_a),
        "only_in_a_first": sorted(ids_a - ids_b)[:5],
        "only_in_b_first": sorted(ids_b - ids_a)[:5],
        "pixels": total,
        "pixel_agreement": float(np.trace(joint)) / total if total else 0.0,
        "agreement_where_both_labelled": float(np.trace(labelled)) / both_labelled if both_labelled else 0.0,
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
        # pixels of each class in A and in B, among those neither labels 255
        "per_class_pixels": {name: {"a": int(m[i, :].sum()), "b": int(m[:, i].sum())} for i, name in enumerate(names)},
        "ignored": {
            "a": ignored_a,
            "b": ignored_b,
            "both": ignored_both,
            "a_fraction": ignored_a / total if total else 0.0,
            "b_fraction": ignored_b / total if total else 0.0,
        },
    }
