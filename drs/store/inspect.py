"""A map store in figures (``drs inspect STORE``): contents, image sizes, bytes against dense arrays, provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from drs.data.fingerprint import Fingerprint
from drs.store.reader import MapStore


def _stats(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    median = float(np.median(values))
    return {"min": int(min(values)), "median": int(median) if median.is_integer() else median, "max": int(max(values))}


def summary(store: MapStore | str | Path) -> dict[str, Any]:
    """Figures about a store: contents, image sizes, bytes against dense C x H x W uint8, provenance."""
    if not isinstance(store, MapStore):
        with MapStore(store) as opened:
            return summary(opened)
    names = store.class_names
    counts = np.zeros(store.num_classes + 1, dtype=np.int64)
    heights, widths, dense = [], [], []
    maps_stored = 0
    for image_id in store.ids:
        classes, (height, width) = store.header(image_id)
        counts[classes] += 1
        maps_stored += len(classes)
        heights.append(height)
        widths.append(width)
        dense.append(store.num_classes * height * width)
    num = len(store)
    file_bytes = store.path.stat().st_size
    per_image = file_bytes / num if num else None
    dense_mean = float(np.mean(dense)) if dense else None
    attrs = store.attrs
    return {
        "path": str(store.path),
        "schema_version": attrs.get("schema_version"),
        "stage": store.stage,
        "score_scale": store.score_scale,
        "split": store.split,
        "dataset": attrs.get("dataset"),
        "num_images": num,
        "num_classes": store.num_classes,
        "class_names": names,
        "images_per_class": {names[c]: int(counts[c]) for c in range(1, len(names))},
        "maps_stored": maps_stored,
        "image_height": _stats(heights),
        "image_width": _stats(widths),
        "file_bytes": file_bytes,
        "bytes_per_image": per_image,
        "dense_uint8_bytes_per_image": dense_mean,
        "ratio_to_dense": per_image / dense_mean if num and dense_mean else None,
        "checkpoint_sha256": attrs.get("checkpoint_sha256"),
        "dataset_fingerprint": attrs.get("dataset_fingerprint"),
        "package_version": attrs.get("package_version"),
        "created": attrs.get("created"),
        "scales": store.scales,
        "flip": store.flip,
        "config": attrs.get("config"),
    }


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _fingerprint_text(values: dict | None) -> str:
    if not values:
        return "- (not recorded)"

    return str(Fingerprint.from_dict(values, "dataset_fingerprint"))


def format_summary(info: dict[str, Any]) -> str:
    """The summary as readable "key: value" lines."""
    ratio = info["ratio_to_dense"]
    if ratio is None:
        ratio_text = "-"
    elif ratio < 1:
        ratio_text = f"1/{1 / ratio:.0f} of a dense C x H x W uint8 array"
    else:
        ratio_text = f"{ratio:.2f} x a dense C x H x W uint8 array"

    def size(stats: dict) -> str:
        return f"min {stats['min']}, median {stats['median']}, max {stats['max']}"

    per_class = ", ".join(f"{name} {count}" for name, count in info["images_per_class"].items())
    lines = [
        ("path", info["path"]),
        ("schema_version", info["schema_version"]),
        ("stage", info["stage"]),
        ("score scale", f"255 = score {info['score_scale']:g}"),
        ("split", info["split"]),
        ("dataset", info["dataset"]),
        ("images", info["num_images"]),
        ("classes", f"{info['num_classes']} ({', '.join(info['class_names'][1:])})"),
        ("images per class", per_class),
        ("maps stored", info["maps_stored"]),
        ("image height", size(info["image_height"])),
        ("image width", size(info["image_width"])),
        ("file size", _bytes(info["file_bytes"])),
        ("bytes per image", _bytes(info["bytes_per_image"])),
        ("dense uint8 bytes per image", _bytes(info["dense_uint8_bytes_per_image"])),
        ("size vs dense", ratio_text),
        ("checkpoint sha256", info["checkpoint_sha256"] or "-"),
        ("dataset fingerprint", _fingerprint_text(info.get("dataset_fingerprint"))),
        ("package version", info["package_version"]),
        ("created", info["created"]),
        ("scales", ", ".join(f"{s:g}" for s in info["scales"])),
        ("flip", "yes" if info["flip"] else "no"),
        ("config", json.dumps(info["config"], sort_keys=True)),
    ]
    return "\n".join(f"{key}: {value}" for key, value in lines)
