"""The two ways pseudo labels are scored, each named in the metrics it produces.

* ``ours``: the pseudo labels as written (the paper's rule with its ignore steps: conflicts and
  salient background are 255), on the configured train split; pixels labelled 255 are left out of
  the confusion matrix and counted (``ignored_fraction``); ground-truth 255 is left out.
* ``reference``: as the reference's ``scripts/test_cls.py`` and ``scripts/test_refine.py`` score
  them: label = arg-max over (1 - binary saliency, object cues above alpha) with **no** ignore step,
  so every pixel gets a class and every pixel counts (only ground-truth 255 is left out, as their
  ``utils/Metrics.py`` IOUMetric does), on VOC ``train`` (1,464 images: ``VOC2012_list/train_cls.txt``).

``cam.json`` and ``refined.json`` carry ours at the top level with ``protocol``, and the reference's
under ``reference_protocol``; ``headline_protocol`` says which of the two the report leads with
(config ``pseudo_labels.headline_protocol``: ``reference`` for VOC).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drs.errors import UserError
from drs.pseudo_labels import DEFAULTS, binarize_saliency
from drs.settings import PseudoLabelSettings, schema_properties

HEADLINE_PROTOCOLS = tuple(schema_properties("pseudo_labels")["headline_protocol"]["enum"])
OURS_RULE = (
    "pseudo labels with the conflict and salient-background ignore steps; predicted 255 left out of the "
    "confusion matrix and counted (ignored_fraction); ground-truth 255 left out"
)
REFERENCE_RULE = (
    "arg-max of (1 - binary saliency, object cues >= alpha) with no ignore step: every pixel counted, ground-truth "
    "255 left out (the reference's scripts/test_cls.py, test_refine.py)"
)


def reference_label(
    classes,
    maps,
    saliency,
    alpha=DEFAULTS.alpha,
    bg_threshold=DEFAULTS.bg_threshold,
    saliency_threshold=DEFAULTS.saliency_threshold,
):
    """The reference's scoring label (H, W) uint8: no pixel is ignored."""
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[1:]
    if saliency is not None:
        background = 1.0 - binarize_saliency(saliency, saliency_threshold)[None]
    else:
        background = np.full((1, h, w), bg_threshold, np.float32)
    scores = np.concatenate([background, np.where(maps < alpha, 0.0, maps)], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    return lookup[scores.argmax(axis=0)]


def protocol(name: str, split: str, num_images: int, saliency_threshold, **more) -> dict:
    rule = REFERENCE_RULE if name == "reference" else OURS_RULE
    return {
        "name": name,
        "split": split,
        "num_images": num_images,
        "scoring": rule,
        "saliency_threshold": saliency_threshold,
        **more,
    }


def reference_score(
    store_path: str | Path,
    dataset: str | Path | None = None,
    split: str | None = None,
    settings: PseudoLabelSettings = DEFAULTS,
) -> dict:
    """Score a map store's images the reference's way, on ``split`` (default: the store's own):
    its images must all be in the store, with the rule's ``settings`` (alpha, bg_threshold,
    saliency, saliency_threshold, missing_saliency). Returns miou, pixel_accuracy, per_class_iou,
    num_images and ``protocol``. An image without a saliency map is an error, or uses the
    background threshold with ``missing_saliency="threshold"`` (as in
    :func:`drs.pseudo_labels.threshold_images`)."""
    s = settings
    from drs.data.voc import VOCDataset
    from drs.eval_maps import Coverage
    from drs.maps import MapStore
    from drs.metrics import SegmentationScore
    from drs.pseudo_labels import threshold_images

    with MapStore(store_path) as store:
        root = dataset or store.attrs.get("dataset")
        split = split or store.split
        voc = VOCDataset(root, split)
        names = list(voc.class_names)
        if names != list(store.class_names):
            raise UserError(f"{store_path}: classes {store.class_names} differ from {root}'s {names}")
        missing = [i for i in voc.ids if i not in store]
        if missing:
            raise UserError(
                f"{store_path}: {len(missing)} image(s) of split {split!r} (e.g. {missing[0]!r}) have no maps; the "
                f"reference protocol scores the split {split!r}, which must lie within the store's split {store.split!r}"
            )
        use_saliency = s.saliency != "none"
        threshold_ids = threshold_images(voc, voc.ids, s.saliency, s.missing_saliency, s.bg_threshold)
        score = SegmentationScore(len(names))
        coverage = Coverage()  # the maps' part / rest-of-object / background coverage at alpha
        for image_id in voc.ids:
            record = store.read(image_id)
            maps = record.float()
            sal = None
            if use_saliency and image_id not in threshold_ids:
                sal = voc.load_saliency(image_id, size=tuple(record.size))
            label = reference_label(record.classes, maps, sal, s.alpha, s.bg_threshold, s.saliency_threshold)
            mask = voc.load_mask(image_id)
            try:
                score.add(label, mask)
            except ValueError as err:
                raise UserError(f"{voc.mask_path(image_id)}: {err}") from None
            coverage.add(record.classes, maps, mask, voc.load_part_mask(image_id) if voc.has_parts else None, s.alpha)
    result = score.result(names)
    result["coverage"] = coverage.result()
    result.pop("confusion_matrix")
    result.pop("ignored_fraction")
    result["split"] = split
    result["protocol"] = protocol(
        "reference",
        split,
        result["num_images"],
        s.saliency_threshold if use_saliency else None,
        background_cue="saliency" if use_saliency else "threshold",
        alpha=s.alpha,
        store=str(store_path),
        threshold_images=len(threshold_ids),
    )
    return result


def add_protocols(result: dict, reference: dict | None, saliency_threshold, headline: str = "ours") -> dict:
    """``result`` (ours, at the top level) with its ``protocol``, ``reference_protocol`` and
    ``headline_protocol``."""
    if headline not in HEADLINE_PROTOCOLS:
        raise UserError(f"headline protocol {headline!r}: expected one of {list(HEADLINE_PROTOCOLS)}")
    if headline == "reference" and reference is None:
        raise UserError("headline protocol 'reference' needs the reference scores (a map store to score)")
    result["protocol"] = protocol(
        "ours",
        result["split"],
        result["num_images"],
        saliency_threshold,
        ignored_fraction=result.get("ignored_fraction"),
    )
    if reference is not None:
        result["reference_protocol"] = reference
    result["headline_protocol"] = headline
    return result


def apply(result: dict, settings: PseudoLabelSettings, dataset: str | Path | None, store: str | None) -> dict:
    """:func:`add_protocols` with the pseudo-label ``settings`` (eval-maps, score-labels): the
    reference's scores of ``store`` (on ``settings.reference_split``) when there is one."""
    reference = None
    if store:
        reference = reference_score(store, dataset, settings.reference_split, settings)
    threshold = settings.saliency_threshold if settings.saliency != "none" else None
    return add_protocols(result, reference, threshold, settings.headline_protocol)
