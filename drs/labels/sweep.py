"""Threshold curves of the pseudo-label rule from a map store, without retraining (``drs sweep-labels``).

One pass over the store (each image's maps, mask and saliency map read once) scores the rule's
labels at every background threshold ``alpha`` of a grid (the saliency threshold at its configured
value) and at every saliency threshold of a grid (``alpha`` at its configured value), under both
scorings of :mod:`drs.labels.scoring`, named as the metrics JSON names them (``protocol.name``):

* ``ours``: the labels as written (:func:`drs.labels.rule.pseudo_label`, with the ignore steps),
  predicted 255 left out and counted (``ignored_fraction``), on the store's images;
* ``reference``: the arg-max with no ignore step (:func:`drs.labels.rule.reference_label`), every
  pixel counted, on ``pseudo_labels.reference_split`` (default: the store's split).

:func:`rule_labels` makes both labels of one setting from one arg-max; it equals the two rule
functions (tests/test_sweep_labels.py), so the sweep at the configured settings is what ``drs
pseudo-labels`` + ``drs score-labels`` give. Confusion matrices are integer sums over images, so
the result is the same for any worker count.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from drs.config.settings import PseudoLabelSettings
from drs.data.fingerprint import check_store_data
from drs.data.voc import IGNORE, VOCDataset
from drs.errors import UserError
from drs.evaluation.metrics import SegmentationScore
from drs.evaluation.protocol import label_protocol
from drs.labels.rule import DEFAULTS, binarize_saliency, first_argmax
from drs.labels.writer import CHUNK_IMAGES, threshold_images
from drs.store.reader import MapStore
from drs.util.files import usable_cores
from drs.util.processes import map_in_workers

#: the two scorings, as the metrics JSON names them (its ``protocol`` / ``reference_protocol`` names)
SCORINGS = ("ours", "reference")
#: the default grids: alpha 0.05 .. 0.60 in steps of 0.05; saliency grey levels 20 .. 240 in steps of 20
#: (the rule's "grey > threshold" on 0-255); the configured value is always added
DEFAULT_ALPHAS = tuple(round(0.05 * i, 2) for i in range(1, 13))
DEFAULT_SALIENCY_THRESHOLDS = tuple(float(t) for t in range(20, 241, 20))
ALPHA_OPTION = "--alphas"
SALIENCY_OPTION = "--saliency-thresholds"


# -- grids -----------------------------------------------------------------------------------------
def parse_grid(text: str, option: str) -> list[float]:
    """A comma-separated list of numbers (``"0.1,0.2"``); UserError naming ``option`` otherwise."""
    values = []
    for part in text.split(","):
        try:
            values.append(float(part))
        except ValueError:
            raise UserError(f"{option}: expected comma-separated numbers, got {part.strip()!r} in {text!r}") from None
    return values


def alpha_grid(values, configured: float) -> list[float]:
    """The sorted alphas to score: ``values`` (default :data:`DEFAULT_ALPHAS`), each in (0, 1), and
    the ``configured`` one."""
    values = DEFAULT_ALPHAS if values is None else values
    if not len(values):
        raise UserError(f"{ALPHA_OPTION}: no values given")
    for v in values:
        if not 0.0 < v < 1.0:
            raise UserError(f"{ALPHA_OPTION}: {v!r} is outside (0, 1)")
    return sorted({float(v) for v in values} | {float(configured)})


def saliency_grid(values, configured: float) -> list[float]:
    """The sorted saliency thresholds (grey levels) to score: ``values`` (default
    :data:`DEFAULT_SALIENCY_THRESHOLDS`), each in [0, 255], and the ``configured`` one."""
    values = DEFAULT_SALIENCY_THRESHOLDS if values is None else values
    if not len(values):
        raise UserError(f"{SALIENCY_OPTION}: no values given")
    for v in values:
        if not 0.0 <= v <= 255.0:
            raise UserError(f"{SALIENCY_OPTION}: {v!r} is outside [0, 255] (grey levels)")
    return sorted({float(v) for v in values} | {float(configured)})


# -- the rule, both labels at once -----------------------------------------------------------------
def rule_labels(
    classes: np.ndarray, maps: np.ndarray, salient: np.ndarray | None, settings: PseudoLabelSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(ours, reference): :func:`drs.labels.rule.pseudo_label` and :func:`drs.labels.rule.reference_label`
    of one image from one arg-max. ``maps``: float32 (K, H, W); ``salient``: the saliency as the rule
    uses it (:func:`drs.labels.rule.binarize_saliency` of the grey map at ``settings.saliency_threshold``),
    or None for the constant background cue ``bg_threshold``."""
    s = settings
    h, w = maps.shape[1:]
    if salient is not None:
        background = (1.0 - salient)[None].astype(np.float32)
    else:
        background = np.full((1, h, w), s.bg_threshold, np.float32)
    scores = np.concatenate([background, np.where(maps < s.alpha, 0.0, maps)], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    reference = lookup[first_argmax(scores)]
    ours = reference.copy()
    above = np.zeros((h, w), np.uint8)
    for channel in scores:
        above += channel > s.conflict_score
    ours[above > 2] = IGNORE
    if salient is not None:
        ours[(salient >= 1.0) & (ours == 0)] = IGNORE
    return ours, reference


# -- one pass over the store -----------------------------------------------------------------------
def _add(score: SegmentationScore, label: np.ndarray, mask: np.ndarray, voc: VOCDataset, image_id: str) -> None:
    try:
        score.add(label, mask)
    except ValueError as err:
        raise UserError(f"{voc.mask_path(image_id)}: {err}") from None


def _sweep_chunk(job: dict) -> tuple[list[SegmentationScore], list[SegmentationScore]]:
    """The (ours, reference) scores of ``job['points']`` (alpha, saliency threshold) over the images
    ``job['ids']``, each read once. Runs in a worker."""
    voc = VOCDataset(job["root"], job["split"])
    s, points, n = job["settings"], job["points"], job["num_labels"]
    ours = [SegmentationScore(n) for _ in points]
    reference = [SegmentationScore(n) for _ in points]
    by_threshold: dict = {}
    for i, (_, threshold) in enumerate(points):
        by_threshold.setdefault(threshold, []).append(i)
    with MapStore(job["store"]) as store:
        for image_id in job["ids"]:
            record = store.read(image_id)
            maps = record.float()
            mask = voc.load_mask(image_id)
            if mask.shape != tuple(record.size):
                raise UserError(f"{store.path}: {image_id} has maps of size {record.size}, mask {mask.shape}")
            grey = None
            if job["use_saliency"] and image_id not in job["threshold_ids"]:
                grey = voc.load_saliency(image_id)
                if grey.shape != tuple(record.size):
                    raise UserError(
                        f"{voc.saliency_path(image_id)}: saliency map is {grey.shape[0]}x{grey.shape[1]} but "
                        f"map store {store.path} has {record.size[0]}x{record.size[1]} maps for {image_id!r}"
                    )
            scored_by_reference = image_id in job["reference_ids"]
            for threshold, indices in by_threshold.items():
                salient = binarize_saliency(grey, threshold) if grey is not None else None
                for i in indices:
                    setting = replace(s, alpha=points[i][0], saliency_threshold=threshold)
                    label, ref_label = rule_labels(record.classes, maps, salient, setting)
                    _add(ours[i], label, mask, voc, image_id)
                    if scored_by_reference:
                        _add(reference[i], ref_label, mask, voc, image_id)
    return ours, reference


def _merged(parts: list[SegmentationScore], num_labels: int) -> SegmentationScore:
    """The sum of per-chunk scores of one setting."""
    total = SegmentationScore(num_labels)
    for part in parts:
        total.matrix += part.matrix
        total.ignored += part.ignored
        total.valid += part.valid
        total.images += part.images
    return total


def _figures(score: SegmentationScore, names: list[str], scoring: str) -> dict:
    result = score.result(names)
    figures = {"miou": result["miou"], "pixel_accuracy": result["pixel_accuracy"]}
    if scoring == "ours":
        figures["ignored_fraction"] = result["ignored_fraction"]
    return figures


def _curve(key: str, grid: list[float], configured, fixed: dict, scored: dict) -> dict:
    """One threshold's curve: its grid, the figures at each value, the configured value and the
    best value under each scoring (the highest mIoU; the smallest such value on a tie)."""
    points = [{"value": v, **scored[v]} for v in grid]
    best = {}
    for scoring in SCORINGS:
        top = max(points, key=lambda p: p[scoring]["miou"])  # max keeps the first of equal values
        best[scoring] = {"value": top["value"], **top[scoring]}
    return {"threshold": key, "grid": grid, "configured": configured, "fixed": fixed, "points": points, "best": best}


def _skipped(key: str, reason: str) -> dict:
    return {
        "threshold": key,
        "grid": [],
        "configured": None,
        "fixed": {},
        "points": [],
        "best": None,
        "skipped": reason,
    }


def sweep_store(
    store_path: str | Path,
    dataset: str | Path | None = None,
    split: str | None = None,
    settings: PseudoLabelSettings = DEFAULTS,
    alphas=None,
    saliency_thresholds=None,
    workers: int | None = None,
) -> dict:
    """Score the store's pseudo labels over an alpha grid and a saliency-threshold grid (see the
    module docstring). ``dataset``: default the store's; ``split``: the store's (another is an
    error); ``alphas``, ``saliency_thresholds``: the grids (defaults :data:`DEFAULT_ALPHAS`,
    :data:`DEFAULT_SALIENCY_THRESHOLDS`). The saliency-threshold curve needs ``saliency:
    saliency_map`` with a number as ``saliency_threshold`` (else it is ``skipped``, and a grid
    given for it an error). Returns the JSON object ``drs sweep-labels`` writes."""
    s = settings
    store_path = Path(store_path)
    if workers is not None and workers < 1:
        raise UserError(f"--workers: must be at least 1, got {workers}")
    use_saliency = s.saliency == "saliency_map"
    sweep_saliency = use_saliency and s.saliency_threshold is not None
    if saliency_thresholds is not None and not sweep_saliency:
        why = "saliency is 'none'" if not use_saliency else "saliency_threshold is null (continuous saliency)"
        raise UserError(f"{SALIENCY_OPTION}: the rule's {why}, so there is no saliency threshold to sweep")
    alpha_values = alpha_grid(alphas, s.alpha)
    threshold_values = saliency_grid(saliency_thresholds, s.saliency_threshold) if sweep_saliency else []

    with MapStore(store_path) as store:  # closed again before any worker starts
        ids, store_split, stage = store.ids, store.split, store.stage
        store_names = store.class_names
        root = dataset if dataset is not None else store.attrs.get("dataset")
        if split is not None and split != store_split:
            raise UserError(f"{store_path}: map store of split {store_split!r}, not {split!r} (--split)")
        if not root or not Path(root).is_dir():
            raise UserError(f"{root}: dataset folder of map store {store_path} not found; pass --dataset ROOT")
        voc = VOCDataset(root, store_split)
        names = list(voc.class_names)
        if names != list(store_names):
            raise UserError(f"{store_path}: classes {store_names} differ from {root}'s {names}")
        check_store_data(store, voc)  # maps of these images, scored against these masks
    if not ids:
        raise UserError(f"{store_path}: map store holds no images")
    reference_split = s.reference_split or store_split
    reference_ids = set(VOCDataset(root, reference_split).ids)
    missing = sorted(reference_ids.difference(ids))
    if missing:
        raise UserError(
            f"{store_path}: {len(missing)} image(s) of split {reference_split!r} (e.g. {missing[0]!r}) have no maps; "
            f"the reference protocol scores the split {reference_split!r}, which must lie within the store's split "
            f"{store_split!r}"
        )
    threshold_ids = threshold_images(voc, ids, s)

    configured_threshold = s.saliency_threshold if use_saliency else None
    points = list(dict.fromkeys([(a, configured_threshold) for a in alpha_values]))
    points += [(s.alpha, t) for t in threshold_values if (s.alpha, t) not in points]
    workers = max(1, min(workers or usable_cores(), len(ids)))
    size = max(1, min(CHUNK_IMAGES, -(-len(ids) // (workers * 4))))
    common = dict(
        store=str(store_path),
        root=str(root),
        split=store_split,
        settings=s,
        points=points,
        num_labels=len(names),
        use_saliency=use_saliency,
    )
    jobs = []
    for i in range(0, len(ids), size):
        chunk = ids[i : i + size]
        jobs.append(
            dict(
                common,
                ids=chunk,
                threshold_ids=threshold_ids.intersection(chunk),
                reference_ids=reference_ids.intersection(chunk),
            )
        )
    parts = map_in_workers(_sweep_chunk, jobs, workers)

    scored = {}
    for i, point in enumerate(points):
        ours = _merged([p[0][i] for p in parts], len(names))
        reference = _merged([p[1][i] for p in parts], len(names))
        scored[point] = {"ours": _figures(ours, names, "ours"), "reference": _figures(reference, names, "reference")}
    sweeps = {
        "alpha": _curve(
            "alpha",
            alpha_values,
            s.alpha,
            {"saliency_threshold": configured_threshold},
            {a: scored[(a, configured_threshold)] for a in alpha_values},
        )
    }
    if sweep_saliency:
        sweeps["saliency_threshold"] = _curve(
            "saliency_threshold",
            threshold_values,
            s.saliency_threshold,
            {"alpha": s.alpha},
            {t: scored[(s.alpha, t)] for t in threshold_values},
        )
    else:
        why = "saliency: none" if not use_saliency else "saliency_threshold: null (continuous saliency)"
        sweeps["saliency_threshold"] = _skipped("saliency_threshold", f"the rule has {why}")
    threshold = configured_threshold
    protocols = {
        "ours": label_protocol("ours", store_split, len(ids), threshold),
        "reference": label_protocol(
            "reference",
            reference_split,
            len(reference_ids),
            threshold,
            background_cue="saliency" if use_saliency else "threshold",
        ),
    }
    return {
        "store": str(store_path),
        "split": store_split,
        "stage": stage,
        "dataset": str(root),
        "num_images": len(ids),
        "threshold_images": len(threshold_ids),
        "settings": asdict(s),
        "headline_protocol": s.headline_protocol,
        "protocols": protocols,
        "sweeps": sweeps,
    }


def summary_lines(result: dict) -> list[str]:
    """One line per swept threshold: each scoring's mIoU at the configured value and at its best."""
    lines = []
    for key, curve in result["sweeps"].items():
        if curve.get("skipped"):
            lines.append(f"{key}: not swept ({curve['skipped']})")
            continue
        at = next(p for p in curve["points"] if p["value"] == curve["configured"])
        parts = []
        for scoring in SCORINGS:
            best = curve["best"][scoring]
            parts.append(
                f"{scoring} mIoU {at[scoring]['miou']:.3f} at {curve['configured']:g}, "
                f"best {best['miou']:.3f} at {best['value']:g}"
            )
        lines.append(f"{key} ({len(curve['grid'])} values): " + "; ".join(parts))
    return lines
