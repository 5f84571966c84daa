"""`drs bench loaders`: each trainer's data pipeline (decode, augmentation, collation), images/s
through its dataset class and a DataLoader at its paper settings: in-process, with one worker and
with all workers.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from drs.bench.machine import _load, machine
from drs.config.settings import RefinerSettings, SegmenterSettings
from drs.data.datasets import ClassificationSet, RefineSet, SegmentationSet
from drs.data.transforms import classification_transform
from drs.data.voc import VOCDataset
from drs.util.files import usable_cores


def _loaders(dataset: Path, store: Path) -> dict:
    voc = VOCDataset(dataset, "train")
    refiner = RefinerSettings()
    segmenter = SegmenterSettings()
    return {
        "classifier (resize 384, crop 320, batch 5)": (ClassificationSet(voc, classification_transform(384, 320)), 5),
        f"refiner (resize {refiner.input_size}, crop {refiner.crop_size}, batch {refiner.batch_size})": (
            RefineSet(voc, store, refiner.input_size, refiner.crop_size, refiner.random_crop),
            refiner.batch_size,
        ),
        f"segmenter (scale {segmenter.scale_range}, crop {segmenter.crop_size}, batch 8)": (
            SegmentationSet(voc, None, segmenter),
            8,
        ),
    }


def _loader_rate(data, batch_size: int, workers: int, images: int) -> float:
    torch.manual_seed(0)
    loader = DataLoader(
        Subset(data, range(min(images, len(data)))), batch_size=batch_size, num_workers=workers, shuffle=True
    )
    it = iter(loader)
    next(it)  # start-up and the first batch are not timed
    start, n = time.perf_counter(), 0
    for images_, _ in it:
        n += len(images_)
    return n / (time.perf_counter() - start)


def bench_loaders(dataset: Path, store: Path, images: int = 160, rounds: int = 2) -> dict:
    cores = usable_cores()
    torch.set_num_threads(1)
    out = {}
    for name, (data, batch) in _loaders(dataset, store).items():
        rates = {0: [], 1: [], cores: []}
        for _ in range(rounds):
            for workers in rates:
                rates[workers].append(_loader_rate(data, batch, workers, images))
        out[name] = {f"workers={w}": max(r) for w, r in rates.items()}
    return {
        "images": images,
        "rounds": rounds,
        "cores": cores,
        "loaders": out,
        "load_average": _load(),
        "machine": machine(),
    }
