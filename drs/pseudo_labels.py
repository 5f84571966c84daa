"""Pseudo labels from localization maps, the paper's way.

Object cues: maps below ``alpha`` set to 0. Background cue: 1 - saliency (or a constant threshold
when there is no saliency), where the grey saliency map is first binarised, as in the reference's
loaders (``utils/LoadData.py``, ``utils/transforms/transforms_refine.py``): grey > ``saliency_threshold``
(50 on the 0-255 scale) is salient (1), the rest 0; ``saliency_threshold=None`` keeps the grey values
as continuous saliency in [0, 1] (not the reference's rule; an explicit option). Label: arg-max over
(background, classes). Ignored (255): pixels where more than two of those scores exceed
``conflict_score``, and pixels labelled background although salient (saliency == 1).

``drs pseudo-labels STORE --out DIR`` writes every image's label as ``DIR/<id>.png`` (VOC palette
PNG, 255 = ignore), over all cores; ``drs score-labels DIR --dataset ROOT --split SPLIT`` scores such
a folder against the ground truth.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from drs.errors import UserError
from drs.fileio import atomic_write_text, check_outside_dataset, check_replaceable_dir, publishing_dir, usable_cores
from drs.workers import map_in_workers

log = logging.getLogger("drs.pseudo_labels")

IGNORE = 255
KIND = "pseudo labels"  # the kind of folder `drs pseudo-labels` publishes (fileio.MARKER)
#: the reference's saliency binarisation: grey > 50 (0-255) is salient
SALIENCY_THRESHOLD = 50


def binarize_saliency(saliency: np.ndarray, threshold: float | None = SALIENCY_THRESHOLD) -> np.ndarray:
    """Grey saliency in [0, 1] (grey / 255) -> 1.0 where grey > ``threshold`` (on 0-255), else 0.0;
    ``threshold=None`` returns the grey values unchanged (continuous saliency)."""
    saliency = np.asarray(saliency, dtype=np.float32)
    if threshold is None:
        return saliency
    return (np.rint(saliency * 255.0) > threshold).astype(np.float32)


def saliency_threshold_arg(text: str) -> float | None:
    """``--saliency-threshold`` value: a number on 0-255, or ``continuous`` / ``none`` for None."""
    if text.lower() in ("continuous", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 255] or 'continuous', got {text!r}") from None
    if not 0.0 <= value <= 255.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 255] or 'continuous', got {text!r}")
    return value


def pseudo_label(
    classes: np.ndarray,
    maps: np.ndarray,
    saliency: np.ndarray | None,
    alpha: float = 0.2,
    bg_threshold: float = 0.2,
    conflict_score: float = 0.9,
    saliency_threshold: float | None = SALIENCY_THRESHOLD,
) -> np.ndarray:
    """Label map (H, W) uint8 from the maps (K, H, W) of the image's classes (K,) and the grey
    saliency (H, W) in [0, 1], binarised at ``saliency_threshold`` (see :func:`binarize_saliency`)."""
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[1:]
    if saliency is not None:
        saliency = binarize_saliency(saliency, saliency_threshold)
    cues = np.where(maps < alpha, 0.0, maps)
    background = (1.0 - saliency)[None] if saliency is not None else np.full((1, h, w), bg_threshold, np.float32)
    scores = np.concatenate([background.astype(np.float32), cues], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    label = lookup[scores.argmax(axis=0)]
    label[(scores > conflict_score).sum(axis=0) > 2] = IGNORE
    if saliency is not None:
        label[(saliency >= 1.0) & (label == 0)] = IGNORE
    return label


# -- label files -------------------------------------------------------------------------------------
SALIENCY_MODES = ("saliency_map", "none")
MISSING_SALIENCY_MODES = ("error", "threshold")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {list(choices)}, got {value!r}")


def threshold_images(voc, ids, saliency: str, missing_saliency: str, bg_threshold: float) -> set[str]:
    """The ids among ``ids`` (of the dataset ``voc``) whose background cue is the threshold for
    want of a saliency map: with ``saliency="saliency_map"``, those without a map when
    ``missing_saliency="threshold"`` (a warning counts them), and an error naming the first
    when ``missing_saliency="error"``; none with ``saliency="none"`` (every image uses the
    threshold then)."""
    _check_choice("saliency", saliency, SALIENCY_MODES)
    _check_choice("missing_saliency", missing_saliency, MISSING_SALIENCY_MODES)
    if saliency == "none":
        return set()
    missing = [i for i in ids if not voc.saliency_path(i).exists()]
    if missing and missing_saliency == "error":
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(
            f"{voc.saliency_path(missing[0])}: saliency map not found{more}; "
            "--missing-saliency threshold uses the background threshold for such images, "
            "--saliency none for all images"
        )
    if missing:
        log.warning(
            "%d of %d images have no saliency map (first: %s): they use the background threshold %g",
            len(missing), len(ids), voc.saliency_path(missing[0]), bg_threshold,
        )  # fmt: skip
    return set(missing)


def _label_chunk(job: dict) -> tuple[int, int, int]:
    """Write the labels of ``job['ids']``; returns (images, ignored pixels, pixels). Runs in a worker."""
    from drs.data.voc import VOCDataset, save_label_png
    from drs.maps import MapStore

    voc = VOCDataset(job["root"], job["split"])
    out = Path(job["out"])
    threshold_ids = job["threshold_ids"]
    images = ignored = pixels = 0
    with MapStore(job["store"]) as store:
        for image_id in job["ids"]:
            record = store.read(image_id)
            saliency = None
            if job["use_saliency"] and image_id not in threshold_ids:
                saliency = voc.load_saliency(image_id)
                if saliency.shape != tuple(record.size):
                    raise UserError(
                        f"{voc.saliency_path(image_id)}: saliency map is {saliency.shape[0]}x{saliency.shape[1]} but "
                        f"map store {store.path} has {record.size[0]}x{record.size[1]} maps for {image_id!r}"
                    )
            label = pseudo_label(
                record.classes, record.float(), saliency, job["alpha"], job["bg_threshold"], job["conflict_score"],
                job["saliency_threshold"],
            )  # fmt: skip
            save_label_png(out / f"{image_id}.png", label)
            images += 1
            ignored += int((label == IGNORE).sum())
            pixels += label.size
    return images, ignored, pixels


def generate_pseudo_labels(
    store_path: str | Path,
    out_dir: str | Path,
    dataset: str | Path | None = None,
    alpha: float = 0.2,
    saliency: str = "saliency_map",
    bg_threshold: float = 0.2,
    conflict_score: float = 0.9,
    missing_saliency: str = "error",
    workers: int | None = None,
    limit: int | None = None,
    saliency_threshold: float | None = SALIENCY_THRESHOLD,
) -> dict:
    """:func:`write_pseudo_labels`, returning figures about the run (``out``, ``num_images``,
    ``ignored_fraction`` over all label pixels, ``seconds``, ``images_per_s``, ``workers``,
    ``threshold_images``: images that used the threshold for want of a saliency map).
    ``limit`` keeps the store's first ``limit`` images."""
    from drs.data.fingerprint import check_store_data
    from drs.data.voc import VOCDataset, id_problem
    from drs.maps import MapStore

    _check_choice("saliency", saliency, SALIENCY_MODES)
    _check_choice("missing_saliency", missing_saliency, MISSING_SALIENCY_MODES)
    if workers is not None and workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    start = time.perf_counter()
    store_path = Path(store_path)
    out_dir = Path(out_dir)
    with MapStore(store_path) as store:  # closed again before any worker starts
        ids = store.ids
        split = store.split
        store_names = store.class_names
        root = dataset if dataset is not None else store.attrs.get("dataset")
    if limit is not None:
        ids = ids[:limit]
    if not root or not Path(root).is_dir():
        raise UserError(f"{root}: dataset folder of map store {store_path} not found; pass --dataset ROOT")
    voc = VOCDataset(root, split)
    bad = next((i for i in ids if id_problem(i)), None)
    if bad is not None:  # labels are written as OUT/<id>.png: never outside OUT
        raise UserError(f"{store_path}: {id_problem(bad)}; ids are file names without folders")
    if list(voc.class_names) != list(store_names):
        raise UserError(f"{store_path}: classes {store_names} differ from {root}'s {list(voc.class_names)}")
    with MapStore(store_path) as store:  # labels only for the images the maps came from
        check_store_data(store, voc)

    use_saliency = saliency == "saliency_map"
    threshold_ids = threshold_images(voc, ids, saliency, missing_saliency, bg_threshold)

    check_replaceable_dir(out_dir, KIND, root)
    workers = max(1, min(workers or usable_cores(), len(ids)))
    # a few chunks per worker balance the load; each chunk opens the store and dataset once
    size = max(1, -(-len(ids) // (workers * 4)))
    with publishing_dir(out_dir, replace=True, kind=KIND, dataset=root) as partial:
        common = dict(
            store=str(store_path), root=str(root), split=split, out=str(partial), use_saliency=use_saliency,
            alpha=alpha, bg_threshold=bg_threshold, conflict_score=conflict_score,
            saliency_threshold=saliency_threshold,
        )  # fmt: skip
        jobs = []
        for i in range(0, len(ids), size):
            chunk = ids[i : i + size]
            jobs.append(dict(common, ids=chunk, threshold_ids=threshold_ids.intersection(chunk)))
        counts = map_in_workers(_label_chunk, jobs, workers)  # workers die with this process
    seconds = time.perf_counter() - start
    images = sum(c[0] for c in counts)
    ignored = sum(c[1] for c in counts)
    pixels = sum(c[2] for c in counts)
    log.info("wrote %d pseudo labels to %s in %.2f s (workers: %d)", images, out_dir, seconds, workers)
    return {
        "out": out_dir,
        "num_images": images,
        "ignored_fraction": ignored / pixels if pixels else 0.0,
        "seconds": seconds,
        "images_per_s": images / seconds if seconds > 0 else float("inf"),
        "workers": workers,
        "threshold_images": len(threshold_ids),
        "split": split,
        "dataset": str(root),
        "saliency_threshold": saliency_threshold if use_saliency else None,
    }


def write_pseudo_labels(store_path: str | Path, out_dir: str | Path, **options) -> Path:
    """Write every image's pseudo label as ``out_dir/<id>.png`` (VOC palette PNG, 255 = ignore).

    The dataset root defaults to the store's ``dataset`` attribute; the split is the store's.
    ``saliency="none"`` uses the constant ``bg_threshold`` as background cue for all images. With
    ``saliency="saliency_map"`` an image without a saliency map is an error, unless
    ``missing_saliency="threshold"`` (then it uses the threshold; a warning counts them).
    ``workers`` processes (default: all usable cores; 1 runs inline). The folder is built under
    ``.<name>.partial`` and renamed to ``out_dir`` when complete, replacing an existing folder of
    label PNGs that this command wrote (its marker file, fileio.MARKER), never any other folder nor
    one in the dataset folder; on failure (a full disk, SIGTERM) ``out_dir`` is left as it was, and
    the workers die with this process, even killed. ``options`` are those of
    :func:`generate_pseudo_labels` (dataset, alpha, saliency, bg_threshold, conflict_score,
    missing_saliency, workers, saliency_threshold).
    """
    return generate_pseudo_labels(store_path, out_dir, **options)["out"]


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
def add_saliency_threshold_argument(parser) -> None:
    parser.add_argument(
        "--saliency-threshold", type=saliency_threshold_arg, default=SALIENCY_THRESHOLD, metavar="GREY",
        help=f"grey level (0-255) above which saliency counts as salient (default {SALIENCY_THRESHOLD}, the "
        "reference's); 'continuous' uses grey / 255 as it is",
    )  # fmt: skip


def add_parser(sub) -> None:
    p = sub.add_parser(
        "pseudo-labels",
        help="write a map store's pseudo labels as PNGs (the paper's rule)",
        description="Turn every image of a map store into its pseudo label the paper's way (object cues "
        "above alpha, background from 1 - saliency or a constant threshold, conflicts and salient "
        "background ignored) and write them as VOC palette PNGs (255 = ignore), one per image, into a "
        "folder that is replaced whole when complete.",
    )
    p.add_argument("store", help="HDF5 map store")
    p.add_argument("--out", required=True, help="output folder (<id>.png per image)")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    p.add_argument("--alpha", type=float, default=0.2, help="object cue threshold (default 0.2)")
    p.add_argument("--saliency", choices=SALIENCY_MODES, default="saliency_map", help="background cue")
    p.add_argument("--bg-threshold", type=float, default=0.2, help="background score without saliency (default 0.2)")
    p.add_argument("--conflict-score", type=float, default=0.9, help="score counted for conflicts (default 0.9)")
    add_saliency_threshold_argument(p)
    p.add_argument(
        "--missing-saliency", choices=MISSING_SALIENCY_MODES, default="error",
        help="an image without a saliency map: error (default), or use the background threshold",
    )  # fmt: skip
    p.add_argument("--workers", type=int, help="processes (default: all usable cores)")
    p.set_defaults(func=_run_write)

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
    from drs import protocol

    protocol.add_arguments(s, store_flag=True)
    s.set_defaults(func=_run_score)


def _run_write(args) -> int:
    run = generate_pseudo_labels(
        args.store, args.out, args.dataset, args.alpha, args.saliency, args.bg_threshold, args.conflict_score,
        args.missing_saliency, args.workers, saliency_threshold=args.saliency_threshold,
    )  # fmt: skip
    print(
        f"wrote {run['num_images']} pseudo labels to {run['out']}: {100 * run['ignored_fraction']:.1f}% of pixels "
        f"ignored; {run['images_per_s']:.1f} images/s (workers: {run['workers']})"
    )
    return 0


def _run_score(args) -> int:
    from drs import protocol

    if args.out:
        check_outside_dataset(args.out, args.dataset)
    result = protocol.apply(score_labels(args.labels, args.dataset, args.split), args, args.store)
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(
        f"{result['num_images']} images: mIoU {result['miou']:.3f}, pixel accuracy {result['pixel_accuracy']:.3f}, "
        f"{100 * result['ignored_fraction']:.1f}% of pixels ignored"
    )
    return 0
