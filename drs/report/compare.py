"""A table and a picture comparing experiments' localization maps.

Experiments whose names differ only by a trailing ``_s<seed>`` are one variant run with several
seeds: the table gives each variant's mean and spread (sample standard deviation) over its seeds,
then one row per run. The picture shows, for a few images, the image, its ground truth, and each
variant's map (the maximum over the image's classes) over the image, so one can see where the maps
lie: on the discriminative part or over the whole object.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from drs.config.plan import variant_of
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.report.figures import colour_labels, heat_colors, label_panel
from drs.store.reader import MapStore
from drs.util.files import json_object

COLUMNS = [
    # the pseudo labels' mIoU by the reference's scoring (no ignore step, every pixel), then by ours
    ("mIoU (reference protocol)", lambda m: (m.get("reference_protocol") or {}).get("miou")),
    ("mIoU (saliency bg)", lambda m: m.get("miou_saliency")),
    ("mIoU (threshold bg)", lambda m: m.get("miou_threshold")),
    ("part coverage", lambda m: m["coverage"].get("part")),
    ("rest-of-object coverage", lambda m: m["coverage"].get("rest_of_object")),
    ("background coverage", lambda m: m["coverage"].get("background")),
]


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def load_run(path: str | Path) -> dict:
    """A metrics JSON of ``drs eval-maps``, checked for what the table reads (errors name the file)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read metrics ({err})") from None
    metrics = json_object(text, str(path), "a JSON object of metrics (drs eval-maps)")
    if not isinstance(metrics.get("coverage"), dict):
        raise UserError(f"{path}: no 'coverage' mapping; is it a metrics file of drs eval-maps?")
    for column, get in COLUMNS:
        value = get(metrics)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{path}: {column} must be a number or null, got {value!r}")
    return metrics


def comparison_table(runs: dict[str, dict]) -> str:
    """Markdown: per variant (mean ± sd over seeds), then per run."""
    variants: dict[str, list[str]] = {}
    for name in runs:
        variants.setdefault(variant_of(name), []).append(name)
    head = "| variant | runs | " + " | ".join(c for c, _ in COLUMNS) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 2)
    lines = [head, rule]
    for variant, names in variants.items():
        cells = [_fmt([get(runs[n]) for n in names]) for _, get in COLUMNS]
        lines.append(f"| {variant} | {len(names)} | " + " | ".join(cells) + " |")
    lines += ["", "| run | " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for name, metrics in runs.items():
        lines.append(f"| {name} | " + " | ".join(_fmt([get(metrics)]) for _, get in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def comparison_figure(stores: dict[str, str | Path], ids: list[str] | None = None, count: int = 6) -> np.ndarray:
    """Rows of image | ground truth | one map per store (max over the image's classes)."""
    opened = {name: MapStore(path) for name, path in stores.items()}
    try:
        first = next(iter(opened.values()))
        data = VOCDataset(first.attrs["dataset"], first.split)
        if ids is None:
            # prefer images with several objects: more to see
            ids = sorted(first.ids, key=lambda i: -len(first.header(i)[0]))[:count]
        rows = []
        for image_id in ids:
            image = data.load_image(image_id)
            panels = [
                label_panel(image, image_id),
                label_panel(colour_labels(data.load_mask(image_id)), "ground truth"),
            ]
            for name, store in opened.items():
                record = store.read(image_id)
                heat = np.minimum(record.float().max(axis=0), 1.0) if len(record.classes) else np.zeros(record.size)
                blended = np.round(0.45 * image + 0.55 * heat_colors(heat)).astype(np.uint8)
                panels.append(label_panel(blended, name))
            rows.append(np.concatenate(panels, axis=1))
        return np.concatenate(rows, axis=0)
    finally:
        for store in opened.values():
            store.close()
