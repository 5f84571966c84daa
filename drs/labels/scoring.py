"""Pseudo labels scored against the ground truth, each figure under its named protocol.

* :func:`evaluate_store` (``drs eval-maps``): a map store's pseudo labels made the paper's way, with
  the saliency background cue and with a constant threshold, and the maps' coverage
  (:mod:`drs.labels.coverage`) on a dataset with part masks (the synthetic set);
* :func:`score_labels` (``drs score-labels``): a folder of label PNGs;
* :func:`reference_score`: a store scored as the reference's ``scripts/test_cls.py`` and
  ``test_refine.py`` score it (:func:`drs.labels.rule.reference_label`, no ignore step, every pixel
  counted), on ``pseudo_labels.reference_split``; :func:`with_protocols` puts it beside ours, with
  the ``protocol`` of each (:mod:`drs.evaluation.protocol`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drs.config.settings import HEADLINE_PROTOCOLS, PseudoLabelSettings
from drs.data.fingerprint import check_store_data
from drs.data.voc import IGNORE, VOCDataset, check_label_values, read_label_png
from drs.errors import UserError
from drs.evaluation.metrics import SegmentationScore
from drs.evaluation.protocol import label_protocol
from drs.labels.coverage import Coverage
from drs.labels.rule import DEFAULTS, pseudo_label, reference_label
from drs.labels.writer import threshold_images
from drs.store.reader import MapStore


def evaluate_store(
    store_path: str | Path,
    dataset: str | Path | None = None,
    settings: PseudoLabelSettings = DEFAULTS,
) -> dict:
    """Score ``store_path``'s pseudo labels made with the rule's ``settings``, as
    :func:`drs.labels.writer.generate_pseudo_labels` makes them (an image without a saliency map
    is an error, or uses the background threshold with ``missing_saliency="threshold"``)."""
    s = settings

    with MapStore(store_path) as store:
        root = dataset or store.attrs.get("dataset")
        voc = VOCDataset(root, store.split)
        names = list(voc.class_names)
        if names != list(store.class_names):
            raise UserError(f"{store_path}: classes {store.class_names} differ from {root}'s {names}")
        check_store_data(store, voc)  # maps of these images, scored against these masks
        use_saliency = s.saliency == "saliency_map"
        threshold_ids = threshold_images(voc, store.ids, s)
        with_sal = SegmentationScore(len(names))
        with_thr = SegmentationScore(len(names))
        coverage = Coverage()
        for record in store:
            mask = voc.load_mask(record.image_id)
            maps = record.float()
            if mask.shape != tuple(record.size):
                raise UserError(f"{store_path}: {record.image_id} has maps of size {record.size}, mask {mask.shape}")
            thr_label = pseudo_label(record.classes, maps, None, s)
            with_thr.add(thr_label, mask)
            if use_saliency:
                sal = (
                    None
                    if record.image_id in threshold_ids
                    else voc.load_saliency(record.image_id, size=tuple(record.size))
                )
                sal_label = pseudo_label(record.classes, maps, sal, s)
                with_sal.add(sal_label, mask)
            part = voc.load_part_mask(record.image_id) if voc.has_parts else None
            coverage.add(record.classes, maps, mask, part, s.alpha)
        main = with_sal if use_saliency else with_thr
        result = main.result(names)
        result.update(
            split=store.split,
            background_cue="saliency" if use_saliency else "threshold",
            miou_saliency=with_sal.result(names)["miou"] if use_saliency else None,
            miou_threshold=with_thr.result(names)["miou"],
            threshold_result={k: v for k, v in with_thr.result(names).items() if k != "confusion_matrix"},
            coverage=coverage.result(),
            alpha=s.alpha,
            bg_threshold=s.bg_threshold,
            conflict_score=s.conflict_score,
            missing_saliency=s.missing_saliency,
            threshold_images=len(threshold_ids),
            saliency_threshold=s.saliency_threshold if use_saliency else None,
            store=str(store_path),
            stage=store.stage,
        )
    return result


def summary_line(result: dict) -> str:
    cov = result["coverage"]
    text = f"mIoU {result['miou']:.3f} ({result['background_cue']}), threshold mIoU {result['miou_threshold']:.3f}"
    if "part" in cov:
        text += (
            f"; coverage part {cov['part']:.2f}, rest {cov['rest_of_object']:.2f}, background {cov['background']:.2f}"
        )
    return text


def score_labels(label_dir: str | Path, dataset: str | Path, split: str) -> dict:
    """Score every ``label_dir/<id>.png`` of the split against its ground-truth mask.

    Pixels labelled 255 are left out of the confusion matrix and counted (``ignored_fraction``).
    """
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
    :func:`drs.labels.writer.threshold_images`)."""
    s = settings

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
                f"reference protocol scores the split {split!r}, which must lie within the store's split "
                f"{store.split!r}"
            )
        use_saliency = s.saliency != "none"
        threshold_ids = threshold_images(voc, voc.ids, s)
        score = SegmentationScore(len(names))
        coverage = Coverage()  # the maps' part / rest-of-object / background coverage at alpha
        for image_id in voc.ids:
            record = store.read(image_id)
            maps = record.float()
            sal = None
            if use_saliency and image_id not in threshold_ids:
                sal = voc.load_saliency(image_id, size=tuple(record.size))
            label = reference_label(record.classes, maps, sal, s)
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
    result["protocol"] = label_protocol(
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
    result["protocol"] = label_protocol(
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


def with_protocols(result: dict, settings: PseudoLabelSettings, dataset: str | Path | None, store: str | None) -> dict:
    """:func:`add_protocols` with the pseudo-label ``settings`` (eval-maps, score-labels): the
    reference's scores of ``store`` (on ``settings.reference_split``) when there is one."""
    reference = None
    if store:
        reference = reference_score(store, dataset, settings.reference_split, settings)
    threshold = settings.saliency_threshold if settings.saliency != "none" else None
    return add_protocols(result, reference, threshold, settings.headline_protocol)
