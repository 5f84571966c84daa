"""The metrics files a report reads, checked for the keys it uses (errors name the file)."""

from __future__ import annotations

import math
from pathlib import Path

from drs.errors import UserError
from drs.util.files import json_object

REQUIRED_KEYS = ("miou", "pixel_accuracy", "per_class_iou", "num_images", "split")


def _fraction(value, path: Path, key: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise UserError(f"{path}: {key} must be a number in [0, 1], got {value!r}")
    return float(value)


def load_metrics(path: str | Path) -> dict:
    """A metrics JSON file, checked for the keys the report reads; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: metrics file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read metrics file ({err.strerror})") from None
    data = json_object(text, str(path), "a JSON object of metrics")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}; a metrics file holds {', '.join(REQUIRED_KEYS)}")
    _fraction(data["miou"], path, "miou")
    _fraction(data["pixel_accuracy"], path, "pixel_accuracy")
    per_class = data["per_class_iou"]
    if not isinstance(per_class, dict) or not per_class:
        raise UserError(f"{path}: per_class_iou must map class names to IoU values")
    for name, value in per_class.items():
        _fraction(value, path, f"per_class_iou[{name!r}]")
    if (data.get("supervision") or "image") not in ("image", "full"):
        raise UserError(f"{path}: supervision must be 'image' or 'full', got {data['supervision']!r}")
    return data
