"""Every image's pseudo label as a PNG (``drs pseudo-labels STORE --out DIR``), over all cores.

``DIR/<id>.png`` per image of the store (VOC palette PNG, 255 = ignore), made by :mod:`drs.labels.rule`
from the store's maps and the dataset's saliency maps; the folder is published whole when complete.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from drs.config.settings import MISSING_SALIENCY_MODES, SALIENCY_MODES, PseudoLabelSettings
from drs.data.fingerprint import check_store_data
from drs.data.voc import IGNORE, VOCDataset, id_problem, save_label_png
from drs.errors import UserError
from drs.labels.rule import DEFAULTS, pseudo_label
from drs.store.reader import MapStore
from drs.util.files import check_replaceable_dir, publishing_dir, usable_cores
from drs.util.processes import map_in_workers

log = logging.getLogger("drs.pseudo_labels")
KIND = "pseudo labels"  # the kind of folder `drs pseudo-labels` publishes (drs.util.files.MARKER)
CHUNK_IMAGES = 100  # the most images a worker labels with the store open


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {list(choices)}, got {value!r}")


def threshold_images(voc, ids, settings: PseudoLabelSettings) -> set[str]:
    """The ids among ``ids`` (of the dataset ``voc``) whose background cue is the threshold for
    want of a saliency map, under the rule's ``settings``: with ``saliency="saliency_map"``, those
    without a map when ``missing_saliency="threshold"`` (a warning counts them), and an error naming
    the first when ``missing_saliency="error"``; none with ``saliency="none"`` (every image uses the
    threshold then)."""
    _check_choice("saliency", settings.saliency, SALIENCY_MODES)
    _check_choice("missing_saliency", settings.missing_saliency, MISSING_SALIENCY_MODES)
    if settings.saliency == "none":
        return set()
    missing = [i for i in ids if not voc.saliency_path(i).exists()]
    if missing and settings.missing_saliency == "error":
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
            settings.bg_threshold,
        )
    return set(missing)


def _label_chunk(job: dict) -> tuple[int, int, int]:
    """Write the labels of ``job['ids']``; returns (images, ignored pixels, pixels). Runs in a worker."""
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
            label = pseudo_label(record.classes, record.float(), saliency, job["settings"])
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
    threshold_ids = threshold_images(voc, ids, s)

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
            settings=s,
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
    ``settings`` (:class:`drs.config.settings.PseudoLabelSettings`) hold the rule: ``saliency="none"``
    uses the constant ``bg_threshold`` as background cue for all images; with
    ``saliency="saliency_map"`` an image without a saliency map is an error, unless
    ``missing_saliency="threshold"`` (then it uses the threshold; a warning counts them).
    ``workers`` processes (default: all usable cores; 1 runs inline). The folder is built under
    ``.<name>.partial`` and renamed to ``out_dir`` when complete, replacing an existing folder of
    label PNGs that this command wrote (its marker file, drs.util.files.MARKER), never any other folder nor
    one in the dataset folder; on failure (a full disk, SIGTERM) ``out_dir`` is left as it was, and
    the workers die with this process, even killed. ``options`` are those of
    :func:`generate_pseudo_labels` (dataset, settings, workers).
    """
    return generate_pseudo_labels(store_path, out_dir, **options)["out"]
