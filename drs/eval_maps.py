"""`drs eval-maps`: score a map store's pseudo labels against ground truth, and measure coverage.

Pseudo labels are made the paper's way (see drs.pseudo_labels) twice: with the saliency background
cue (unless ``--saliency none``; an image without a saliency map is an error, or uses the threshold
with ``--missing-saliency threshold``, as in ``drs pseudo-labels``) and with a constant background
threshold. On a dataset with part masks (the synthetic set), the coverage at ``alpha`` says where
the maps are: the share of each object's discriminative part, of the rest of the object, and of the
background that the image's class maps reach (plus mean map values on part and rest). A plain CAM
held on the part shows high part and low rest coverage; DRS should raise rest coverage without
flooding the background.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from drs import protocol
from drs.data.fingerprint import check_store_data
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.fileio import atomic_write_text
from drs.metrics import SegmentationScore
from drs.pseudo_labels import DEFAULTS, add_rule_arguments, pseudo_label, rule_settings, threshold_images
from drs.settings import PseudoLabelSettings

log = logging.getLogger("drs.eval_maps")


class Coverage:
    """Pixel counts pooled over the whole split."""

    def __init__(self):
        self.counts = {k: 0 for k in ("part", "part_hit", "rest", "rest_hit", "background", "background_hit")}
        self.sums = {"part": 0.0, "rest": 0.0}

    def add(self, classes, maps: np.ndarray, mask: np.ndarray, part: np.ndarray | None, alpha: float) -> None:
        on = maps >= alpha
        background = mask == 0
        self.counts["background"] += int(background.sum())
        if len(classes):
            self.counts["background_hit"] += int((on.any(axis=0) & background).sum())
        if part is None:
            return
        for k, c in enumerate(classes):
            part_px = part == c
            rest_px = (mask == c) & ~part_px
            self.counts["part"] += int(part_px.sum())
            self.counts["part_hit"] += int((on[k] & part_px).sum())
            self.counts["rest"] += int(rest_px.sum())
            self.counts["rest_hit"] += int((on[k] & rest_px).sum())
            self.sums["part"] += float(maps[k][part_px].sum())
            self.sums["rest"] += float(maps[k][rest_px].sum())

    def result(self) -> dict:
        c = self.counts

        def share(hit, total):
            return c[hit] / c[total] if c[total] else None

        out = {"background": share("background_hit", "background")}
        if c["part"]:
            out.update(
                part=share("part_hit", "part"),
                rest_of_object=share("rest_hit", "rest"),
                part_mean_score=self.sums["part"] / c["part"],
                rest_mean_score=self.sums["rest"] / c["rest"] if c["rest"] else None,
            )
        return out


def evaluate_store(
    store_path: str | Path,
    dataset: str | Path | None = None,
    settings: PseudoLabelSettings = DEFAULTS,
) -> dict:
    """Score ``store_path``'s pseudo labels made with the rule's ``settings``, as
    :func:`drs.pseudo_labels.generate_pseudo_labels` makes them (an image without a saliency map
    is an error, or uses the background threshold with ``missing_saliency="threshold"``)."""
    from drs.maps import MapStore

    s = settings
    alpha, bg_threshold, conflict_score = s.alpha, s.bg_threshold, s.conflict_score

    with MapStore(store_path) as store:
        root = dataset or store.attrs.get("dataset")
        voc = VOCDataset(root, store.split)
        names = list(voc.class_names)
        if names != list(store.class_names):
            raise UserError(f"{store_path}: classes {store.class_names} differ from {root}'s {names}")
        check_store_data(store, voc)  # maps of these images, scored against these masks
        use_saliency = s.saliency == "saliency_map"
        threshold_ids = threshold_images(voc, store.ids, s.saliency, s.missing_saliency, bg_threshold)
        with_sal = SegmentationScore(len(names))
        with_thr = SegmentationScore(len(names))
        coverage = Coverage()
        for record in store:
            mask = voc.load_mask(record.image_id)
            maps = record.float()
            if mask.shape != tuple(record.size):
                raise UserError(f"{store_path}: {record.image_id} has maps of size {record.size}, mask {mask.shape}")
            thr_label = pseudo_label(record.classes, maps, None, alpha, bg_threshold, conflict_score)
            with_thr.add(thr_label, mask)
            if use_saliency:
                sal = (
                    None
                    if record.image_id in threshold_ids
                    else voc.load_saliency(record.image_id, size=tuple(record.size))
                )
                sal_label = pseudo_label(
                    record.classes, maps, sal, alpha, bg_threshold, conflict_score, s.saliency_threshold
                )
                with_sal.add(sal_label, mask)
            part = voc.load_part_mask(record.image_id) if voc.has_parts else None
            coverage.add(record.classes, maps, mask, part, alpha)
        main = with_sal if use_saliency else with_thr
        result = main.result(names)
        result.update(
            split=store.split,
            background_cue="saliency" if use_saliency else "threshold",
            miou_saliency=with_sal.result(names)["miou"] if use_saliency else None,
            miou_threshold=with_thr.result(names)["miou"],
            threshold_result={k: v for k, v in with_thr.result(names).items() if k != "confusion_matrix"},
            coverage=coverage.result(),
            alpha=alpha,
            bg_threshold=bg_threshold,
            conflict_score=conflict_score,
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


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval-maps",
        help="score a map store's pseudo labels against ground truth (mIoU, coverage)",
        description="Turn a map store into pseudo labels the paper's way and score them against the "
        "ground truth: mIoU with the saliency background and with a background threshold, and the "
        "maps' coverage of parts, rest of objects and background (datasets with part masks).",
    )
    p.add_argument("store", help="HDF5 map store")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    add_rule_arguments(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    settings = rule_settings(args)
    result = evaluate_store(args.store, args.dataset, settings)
    protocol.apply(result, settings, args.dataset, args.store)
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(summary_line(result))
    return 0
