"""Pseudo labels from localization maps, the paper's way.

Object cues: maps below ``alpha`` set to 0. Background cue: 1 - saliency (or a constant threshold
when there is no saliency), where the grey saliency map is first binarised, as in the reference's
loaders (``utils/LoadData.py``, ``utils/transforms/transforms_refine.py``): grey > ``saliency_threshold``
(50 on the 0-255 scale) is salient (1), the rest 0; ``saliency_threshold=None`` keeps the grey values
as continuous saliency in [0, 1] (not the reference's rule; an explicit option). Label: arg-max over
(background, classes). Ignored (255): pixels where more than two of those scores exceed
``conflict_score``, and pixels labelled background although salient (saliency == 1).

``drs pseudo-labels STORE --out DIR`` writes every image's label as ``DIR/<id>.png`` (VOC palette
PNG, 255 = ignore), over all cores (``drs score-labels``, :mod:`drs.score_labels`, scores such a
folder). The rule's settings are the config's ``pseudo_labels`` section
(:class:`drs.settings.PseudoLabelSettings`; its defaults are the schema's).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from drs.data.voc import IGNORE
from drs.errors import UserError
from drs.fileio import check_replaceable_dir, publishing_dir, usable_cores
from drs.settings import PseudoLabelSettings, add_settings_argument, schema_properties, settings_from_args
from drs.workers import map_in_workers

log = logging.getLogger("drs.pseudo_labels")

KIND = "pseudo labels"  # the kind of folder `drs pseudo-labels` publishes (fileio.MARKER)
#: the schema's defaults (the reference's rule: alpha 0.2, saliency binarised at grey > 50, ...)
DEFAULTS = PseudoLabelSettings()
CHUNK_IMAGES = 100  # the most images a worker labels with the store open
SALIENCY_MODES = tuple(schema_properties("pseudo_labels")["saliency"]["enum"])
MISSING_SALIENCY_MODES = tuple(schema_properties("pseudo_labels")["missing_saliency"]["enum"])


def binarize_saliency(saliency: np.ndarray, threshold: float | None = DEFAULTS.saliency_threshold) -> np.ndarray:
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


def first_argmax(scores: np.ndarray) -> np.ndarray:
    """``scores.argmax(axis=0)`` as uint8 for (C <= 256, H, W) scores without NaN: the first
    channel wins ties. A running maximum over the channels, several times faster than numpy's
    strided reduction over the first axis."""
    best = scores[0].copy()
    index = np.zeros(best.shape, np.uint8)
    for c in range(1, scores.shape[0]):
        better = scores[c] > best
        np.copyto(index, c, where=better)
        np.maximum(best, scores[c], out=best)
    return index


def pseudo_label(
    classes: np.ndarray,
    maps: np.ndarray,
    saliency: np.ndarray | None,
    alpha: float = DEFAULTS.alpha,
    bg_threshold: float = DEFAULTS.bg_threshold,
    conflict_score: float = DEFAULTS.conflict_score,
    saliency_threshold: float | None = DEFAULTS.saliency_threshold,
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
    label = lookup[first_argmax(scores)]
    above = np.zeros((h, w), np.uint8)  # how many scores exceed conflict_score, per pixel
    for channel in scores:
        above += channel > conflict_score
    label[above > 2] = IGNORE
    if saliency is not None:
        label[(saliency >= 1.0) & (label == 0)] = IGNORE
    return label


# -- label files -------------------------------------------------------------------------------------
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
            len(missing),
            len(ids),
            voc.saliency_path(missing[0]),
            bg_threshold,
        )
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
                record.classes,
                record.float(),
                saliency,
                job["alpha"],
                job["bg_threshold"],
                job["conflict_score"],
                job["saliency_threshold"],
            )
            save_label_png(out / f"{image_id}.png", label)
            images += 1
            ignored += int((label == IGNORE).sum())
            pixels += label.size
    return images, ignored, pixels


def generate_pseudo_labels(
    store_path: str | Path,
    out_dir: str | Path,
    dataset: str | Path | None = None,
    settings: PseudoLabelSettings = DEFAULTS,
    workers: int | None = None,
    limit: int | None = None,
) -> dict:
    """:func:`write_pseudo_labels`, returning figures about the run (``out``, ``num_images``,
    ``ignored_fraction`` over all label pixels, ``seconds``, ``images_per_s``, ``workers``,
    ``threshold_images``: images that used the threshold for want of a saliency map).
    ``limit`` keeps the store's first ``limit`` images."""
    s = settings
    from drs.data.fingerprint import check_store_data
    from drs.data.voc import VOCDataset, id_problem
    from drs.maps import MapStore

    _check_choice("saliency", s.saliency, SALIENCY_MODES)
    _check_choice("missing_saliency", s.missing_saliency, MISSING_SALIENCY_MODES)
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

    use_saliency = s.saliency == "saliency_map"
    threshold_ids = threshold_images(voc, ids, s.saliency, s.missing_saliency, s.bg_threshold)

    check_replaceable_dir(out_dir, KIND, root)
    workers = max(1, min(workers or usable_cores(), len(ids)))
    # a few chunks per worker balance the load; each chunk opens the store and dataset once, and
    # no more than CHUNK_IMAGES images keep it open (HDF5's metadata cache grows with the objects read)
    size = max(1, min(CHUNK_IMAGES, -(-len(ids) // (workers * 4))))
    with publishing_dir(out_dir, replace=True, kind=KIND, dataset=root) as partial:
        common = dict(
            store=str(store_path),
            root=str(root),
            split=split,
            out=str(partial),
            use_saliency=use_saliency,
            alpha=s.alpha,
            bg_threshold=s.bg_threshold,
            conflict_score=s.conflict_score,
            saliency_threshold=s.saliency_threshold,
        )
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
        "saliency_threshold": s.saliency_threshold if use_saliency else None,
    }


def write_pseudo_labels(store_path: str | Path, out_dir: str | Path, **options) -> Path:
    """Write every image's pseudo label as ``out_dir/<id>.png`` (VOC palette PNG, 255 = ignore).

    The dataset root defaults to the store's ``dataset`` attribute; the split is the store's.
    ``settings`` (:class:`drs.settings.PseudoLabelSettings`) hold the rule: ``saliency="none"``
    uses the constant ``bg_threshold`` as background cue for all images; with
    ``saliency="saliency_map"`` an image without a saliency map is an error, unless
    ``missing_saliency="threshold"`` (then it uses the threshold; a warning counts them).
    ``workers`` processes (default: all usable cores; 1 runs inline). The folder is built under
    ``.<name>.partial`` and renamed to ``out_dir`` when complete, replacing an existing folder of
    label PNGs that this command wrote (its marker file, fileio.MARKER), never any other folder nor
    one in the dataset folder; on failure (a full disk, SIGTERM) ``out_dir`` is left as it was, and
    the workers die with this process, even killed. ``options`` are those of
    :func:`generate_pseudo_labels` (dataset, settings, workers).
    """
    return generate_pseudo_labels(store_path, out_dir, **options)["out"]


# -- command line ------------------------------------------------------------------------------------
def add_rule_arguments(parser) -> None:
    """``--settings`` (the config's ``pseudo_labels`` section) and, for use by hand, a flag per key
    that overrides it (pseudo-labels, eval-maps, score-labels)."""
    keys = schema_properties("pseudo_labels")
    add_settings_argument(parser, PseudoLabelSettings)
    types = {
        "alpha": float,
        "bg_threshold": float,
        "conflict_score": float,
        "saliency_threshold": saliency_threshold_arg,
    }
    for key, spec in keys.items():
        parser.add_argument(
            "--" + key.replace("_", "-"),
            type=types.get(key),
            choices=spec.get("enum"),
            default=argparse.SUPPRESS,
            help=f"override pseudo_labels.{key} (default {spec['default']!r}): {spec.get('description', '')}".rstrip(
                ": "
            ),
        )


def rule_settings(args) -> PseudoLabelSettings:
    """The pseudo-label settings of parsed arguments (:func:`add_rule_arguments`)."""
    return settings_from_args(PseudoLabelSettings, args)


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
    add_rule_arguments(p)
    p.add_argument("--workers", type=int, help="processes (default: all usable cores)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    run = generate_pseudo_labels(args.store, args.out, args.dataset, rule_settings(args), args.workers)
    print(
        f"wrote {run['num_images']} pseudo labels to {run['out']}: {100 * run['ignored_fraction']:.1f}% of pixels "
        f"ignored; {run['images_per_s']:.1f} images/s (workers: {run['workers']})"
    )
    return 0
