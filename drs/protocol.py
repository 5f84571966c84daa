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
from drs.pseudo_labels import SALIENCY_THRESHOLD, binarize_saliency

HEADLINE_PROTOCOLS = ("ours", "reference")
OURS_RULE = (
    "pseudo labels with the conflict and salient-background ignore steps; predicted 255 left out of the "
    "confusion matrix and counted (ignored_fraction); ground-truth 255 left out"
)
REFERENCE_RULE = (
    "arg-max of (1 - binary saliency, object cues >= alpha) with no ignore step: every pixel counted, ground-truth "
    "255 left out (the reference's scripts/test_cls.py, test_refine.py)"
)


def reference_label(classes, maps, saliency, alpha=0.2, bg_threshold=0.2, saliency_threshold=SALIENCY_THRESHOLD):
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
    return {"name": name, "split": split, "num_images": num_images, "scoring": rule, "saliency_threshold": saliency_threshold, **more}


def reference_score(
    store_path: str | Path,
    dataset: str | Path | None = None,
    split: str | None = None,
    alpha: float = 0.2,
    bg_threshold: float = 0.2,
    saliency: str = "saliency_map",
    saliency_threshold: float | None = SALIENCY_THRESHOLD,
    missing_saliency: str = "error",
) -> dict:
    """Score a map store's images the reference's way, on ``split`` (default: the store's own):
    its images must all be in the store. Returns miou, pixel_accuracy, per_class_iou, num_images and
    ``protocol``. An image without a saliency map is an error, or uses the background threshold
    with ``missing_saliency="threshold"`` (as in :func:`drs.pseudo_labels.threshold_images`)."""
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
        use_saliency = saliency != "none"
        threshold_ids = threshold_images(voc, voc.ids, saliency, missing_saliency, bg_threshold)
        score = SegmentationScore(len(names))
        coverage = Coverage()  # the maps' part / rest-of-object / background coverage at alpha
        for image_id in voc.ids:
            record = store.read(image_id)
            maps = record.float()
            sal = None
            if use_saliency and image_id not in threshold_ids:
                sal = voc.load_saliency(image_id, size=tuple(record.size))
            label = reference_label(record.classes, maps, sal, alpha, bg_threshold, saliency_threshold)
            mask = voc.load_mask(image_id)
            try:
                score.add(label, mask)
            except ValueError as err:
                raise UserError(f"{voc.mask_path(image_id)}: {err}") from None
            coverage.add(record.classes, maps, mask, voc.load_part_mask(image_id) if voc.has_parts else None, alpha)
    result = score.result(names)
    result["coverage"] = coverage.result()
    result.pop("confusion_matrix")
    result.pop("ignored_fraction")
    result["split"] = split
    result["protocol"] = protocol(
        "reference", split, result["num_images"], saliency_threshold if use_saliency else None,
        background_cue="saliency" if use_saliency else "threshold", alpha=alpha, store=str(store_path),
        threshold_images=len(threshold_ids),
    )  # fmt: skip
    return result


def add_protocols(result: dict, reference: dict | None, saliency_threshold, headline: str = "ours") -> dict:
    """``result`` (ours, at the top level) with its ``protocol``, ``reference_protocol`` and
    ``headline_protocol``."""
    if headline not in HEADLINE_PROTOCOLS:
        raise UserError(f"headline protocol {headline!r}: expected one of {list(HEADLINE_PROTOCOLS)}")
    if headline == "reference" and reference is None:
        raise UserError("headline protocol 'reference' needs the reference scores (a map store to score)")
    result["protocol"] = protocol(
        "ours", result["split"], result["num_images"], saliency_threshold, ignored_fraction=result.get("ignored_fraction")
    )
    if reference is not None:
        result["reference_protocol"] = reference
    result["headline_protocol"] = headline
    return result


def add_arguments(parser, store_flag: bool = False) -> None:
    """The command-line options of the reference protocol (eval-maps, score-labels)."""
    if store_flag:  # score-labels: the map store and the rule's settings the reference labels need
        from drs.pseudo_labels import MISSING_SALIENCY_MODES, SALIENCY_MODES, add_saliency_threshold_argument

        parser.add_argument("--store", help="map store the labels came from: also score it the reference's way")
        parser.add_argument("--alpha", type=float, default=0.2, help="with --store: object cue threshold (default 0.2)")
        parser.add_argument("--bg-threshold", type=float, default=0.2, help="with --store: background score without saliency")
        parser.add_argument("--saliency", choices=SALIENCY_MODES, default="saliency_map", help="with --store: background cue")
        parser.add_argument(
            "--missing-saliency", choices=MISSING_SALIENCY_MODES, default="error",
            help="with --store: an image without a saliency map: error (default), or use the background threshold",
        )  # fmt: skip
        add_saliency_threshold_argument(parser)
    parser.add_argument(
        "--reference-split", help="split the reference protocol scores (default: the store's; VOC: train, 1,464 images)"
    )
    parser.add_argument(
        "--headline-protocol", choices=HEADLINE_PROTOCOLS, default="ours",
        help="which scores the report leads with (default ours; the reference's for VOC)",
    )  # fmt: skip


def apply(result: dict, args, store: str | None) -> dict:
    """:func:`add_protocols` from parsed arguments (eval-maps, score-labels): the reference's scores
    of ``store`` when there is one."""
    reference = None
    if store:
        reference = reference_score(
            store, args.dataset, args.reference_split, args.alpha, args.bg_threshold, args.saliency,
            args.saliency_threshold, getattr(args, "missing_saliency", "error"),
        )  # fmt: skip
    threshold = args.saliency_threshold if getattr(args, "saliency", "saliency_map") != "none" else None
    return add_protocols(result, reference, threshold, args.headline_protocol)
