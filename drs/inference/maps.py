"""Localization maps of a trained model into an HDF5 map store (``drs extract-maps``).

For every image and every scale s: the image resized to s x s, the model's class maps, ReLU,
bilinear upsampling to the image's size, division by each class's maximum; optionally the same
for the horizontally flipped image (flipped back); the maximum over scales (and flips). A refiner
checkpoint (train-refiner) gives the refined maps: its outputs are already scores (it learnt to
reproduce maps in [0, 1]), so they are taken as they are, neither divided by their maximum nor
clipped to 1, as the reference does (``scripts/pseudo_seg_label_gen.py``: the maximum over scales of
the raw outputs, negatives cut to 0); a score above 1 beats the background score of a non-salient
pixel. The refined store holds scores up to ``REFINED_SCORE_SCALE`` (its ``score_scale``
attribute): in the pseudo-label rule every score above 1 acts alike (it beats any background
score and counts as a conflict), so saturating at 2 changes only a tie between two classes that
both exceed 2. Only the image's ground-truth classes are kept. Images are processed in batches and
written to the store as they come, so memory stays flat in the number of images; the store appears under its final name
only when complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from drs import __version__
from drs.config.settings import MapsSettings
from drs.data.fingerprint import split_fingerprint
from drs.data.transforms import to_normalized_tensor
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.runtime import distributed as ddp
from drs.runtime.device import describe_device, pick_device
from drs.store.model_files import load_classifier
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from drs.util.files import check_outside_dataset, file_sha256, usable_cores
from drs.util.memory import release_free_memory

log = logging.getLogger("drs.extract")
REFINED_SCORE_SCALE = 2.0


def _batches(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def resize_to_scales(tensor, scales: Sequence[int]) -> list:
    """One normalised image tensor (3, H, W) resized (bilinear) to each square scale."""
    return [F.interpolate(tensor[None], size=(s, s), mode="bilinear", align_corners=False)[0] for s in scales]


def forward_resized(model, batches: Sequence, flip: bool, device) -> list[list]:
    """Raw class maps per scale (and flip), per image, from one (B, 3, s, s) batch per scale."""
    outputs = []
    for batch in batches:
        batch = batch.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            maps = model.class_maps(batch).float()
            outputs.append(maps)
            if flip:
                outputs.append(model.class_maps(batch.flip(-1)).float().flip(-1))
    return [[out[i] for out in outputs] for i in range(len(batches[0]))]


def forward_scales(model, tensors: list, scales: Sequence[int], flip: bool, device) -> list[list]:
    """Raw class maps per scale (and flip) for a batch of normalised image tensors of any sizes.
    The resize runs on ``device``: on a GPU it is off the CPU, which then only decodes, normalises,
    converts to uint8, compresses and writes (on the CPU the tensors stay where they are)."""
    resized = [resize_to_scales(t.to(device, non_blocking=True), scales) for t in tensors]
    return forward_resized(model, [torch.stack([r[k] for r in resized]) for k in range(len(scales))], flip, device)


class _DecodedImages:
    """Map-style dataset for a DataLoader: the image decoded and normalised, with its classes and
    size. Runs in loader workers; a UserError (an unreadable image) is returned, not raised, so
    that the main process raises it with its one-line message. The resize to each scale stays in
    the main process: CPU bilinear resizing takes another path on one thread (a worker's) than on
    several, with other last bits, and the store must not depend on the workers."""

    def __init__(self, voc: VOCDataset, ids: Sequence[str]):
        self.voc, self.ids = voc, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        try:
            image = self.voc.load_image(image_id)
            classes = self.voc.labels(image_id)
        except UserError as err:
            return err
        return image_id, classes, image.shape[:2], to_normalized_tensor(image)


def _collate(items: list):
    """A batch of :class:`_DecodedImages` items: ids, classes, sizes, image tensors (any sizes)."""
    for item in items:
        if isinstance(item, UserError):
            return item
    ids, classes, sizes, tensors = zip(*items)
    return list(ids), list(classes), list(sizes), list(tensors)


def default_workers() -> int:
    """Loader processes (and deflate threads) extraction uses by default: the process's torch threads
    (OMP_NUM_THREADS: a workflow job's share of its threads) within its usable cores, up to 8, none
    on a single one."""
    cores = min(usable_cores(), torch.get_num_threads())
    return 0 if cores < 2 else min(cores, 8)


def combine(raw_maps: list, classes: np.ndarray, size: tuple[int, int], normalize: bool = True):
    """ReLU, upsampling to ``size``, per-class max normalisation (``normalize``: maps in [0, 1]; else
    the scores as they are, unclipped), max over scales: (K, H, W)."""
    index = torch.as_tensor(classes - 1, dtype=torch.long, device=raw_maps[0].device)
    best = None
    for maps in raw_maps:
        m = F.relu(maps.index_select(0, index))[None]
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)[0]
        if normalize:
            m = m / (m.amax(dim=(1, 2), keepdim=True) + 1e-5)
        best = m if best is None else torch.maximum(best, m)
    return best


def decoded_batches(
    voc: VOCDataset, ids: Sequence[str], settings: MapsSettings, device, workers: int = 0
) -> DataLoader:
    """Batches of ``settings.batch_size`` images of ``ids``, decoded and normalised by ``workers``
    loader processes (0: this process), pinned for ``device`` when it is a GPU: (ids, classes,
    sizes, image tensors), or a UserError for an unreadable image."""
    return DataLoader(
        _DecodedImages(voc, ids),
        batch_size=settings.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )


def maps_of_batches(
    model, batches, settings: MapsSettings, device, normalize: bool = True
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (id, classes, uint8 maps (K, H, W)) for each image of ``batches`` (those of
    :func:`decoded_batches`), in order: 255 stands for score 1, or for :data:`REFINED_SCORE_SCALE`
    without ``normalize`` (refined maps)."""
    scale = 1.0 if normalize else REFINED_SCORE_SCALE

    def finish(raw, classes, size) -> np.ndarray:
        if classes.size == 0:
            return np.zeros((0, *size), dtype=np.uint8)
        with torch.inference_mode():
            maps = combine(raw, classes, size, normalize).div_(scale).clamp_(0, 1)
            return (maps * 255).round_().to(torch.uint8).cpu().numpy()

    # combine() (upsampling every output to the image's size) runs here, not on other threads:
    # a torch op called from another thread may run on fewer threads, and CPU bilinear
    # upsampling on one thread gives other last bits than on several.
    for batch in batches:
        if isinstance(batch, UserError):
            raise batch
        chunk, labels, sizes, tensors = batch
        with torch.inference_mode():
            per_image = forward_scales(model, tensors, settings.scales, settings.flip, device)
        results = (finish(*item) for item in zip(per_image, labels, sizes))
        yield from zip(chunk, labels, results)
        # This batch's buffers are free now; without a trim the heap, fragmented by the store's
        # small long-lived HDF5 blocks, keeps their pages and grows with every image (drs.util.memory).
        del batch, tensors, per_image, results
        release_free_memory()


def localization_maps(
    model,
    voc: VOCDataset,
    ids: Sequence[str],
    settings: MapsSettings,
    device,
    normalize: bool = True,
    workers: int = 0,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (id, classes, uint8 maps (K, H, W)) for each id, in order: 255 stands for score 1, or
    for :data:`REFINED_SCORE_SCALE` without ``normalize`` (refined maps). ``workers`` loader
    processes decode and normalise the images (0: this process); the result is the same.
    ``settings``: the scales, flip and batch size (the config's ``maps`` section)."""
    batches = decoded_batches(voc, ids, settings, device, workers)
    return maps_of_batches(model, batches, settings, device, normalize)


def write_store(
    path: Path,
    model,
    voc: VOCDataset,
    ids: Sequence[str],
    settings: MapsSettings,
    device,
    normalize: bool,
    workers: int,
    store_options: dict,
) -> None:
    """:func:`localization_maps` of ``ids`` into a new store at ``path`` (``workers`` deflate threads)."""
    start = time.perf_counter()
    with MapStoreWriter(path, **store_options, compress_workers=workers) as writer:
        maps = localization_maps(model, voc, ids, settings, device, normalize, workers)
        for n, (image_id, classes, image_maps) in enumerate(maps, 1):
            writer.add(image_id, classes, image_maps)
            if n % 200 == 0:
                log.info("%d/%d images, %.1f img/s", n, len(ids), n / (time.perf_counter() - start))
    elapsed = time.perf_counter() - start
    log.info(
        "wrote %s: %d images in %.1f s (%.1f img/s), drs %s", path, len(ids), elapsed, len(ids) / elapsed, __version__
    )


def extract_maps(
    checkpoint: str | Path,
    dataset: str | Path,
    split: str,
    out: str | Path,
    settings: MapsSettings | None = None,
    limit: int | None = None,
    workers: int | None = None,
) -> Path:
    """Extract the maps of ``checkpoint`` on ``split`` into the store ``out`` at the scales, flip and
    batch size of ``settings`` (the config's ``maps`` section; default: the schema's). ``workers``: loader
    processes that decode and normalise the images and threads that compress the maps (default
    :func:`default_workers`); they change the pace, never the store's content."""
    s = settings or MapsSettings()
    check_outside_dataset(out, dataset)
    workers = default_workers() if workers is None else workers
    model, record = load_classifier(checkpoint, kinds=("classifier", "refiner"))
    refined = record["kind"] == "refiner"
    voc = VOCDataset(dataset, split)
    if list(voc.class_names) != list(record["class_names"]):
        raise UserError(
            f"{checkpoint}: trained on classes {record['class_names']}, but {dataset} has {list(voc.class_names)}"
        )
    distributed = ddp.init()  # under torchrun: each process extracts a share, rank 0 merges
    world, rank = ddp.world_size(), ddp.rank()
    device = ddp.device() if distributed else pick_device()
    model.to(device)
    where = describe_device(device) + (f", {world} processes" if world > 1 else "")
    log.info("extracting maps on %s: %d images, scales %s, flip %s", where, len(voc), list(s.scales), s.flip)
    ids = voc.ids[:limit] if limit else voc.ids
    fingerprint = split_fingerprint(voc, ("images", "masks"), ids)  # what the maps are made from
    log.info("dataset %s, split %s: %s", dataset, split, fingerprint)
    config = {
        "scales": list(s.scales),
        "flip": s.flip,
        "batch_size": s.batch_size,
        "checkpoint": str(checkpoint),
        "training": record,
    }
    store_options = dict(
        class_names=list(voc.class_names),
        scales=list(s.scales),
        flip=s.flip,
        stage="refined" if refined else "cam",
        split=split,
        dataset=str(Path(dataset).resolve()),
        checkpoint_sha256=file_sha256(checkpoint),
        config=config,
        dataset_fingerprint=fingerprint.as_dict(),
        score_scale=REFINED_SCORE_SCALE if refined else 1.0,
    )

    def write(path: Path, chunk: Sequence[str]) -> None:
        write_store(path, model, voc, chunk, s, device, not refined, workers, store_options)

    out = Path(out)
    if world == 1:
        write(out, ids)
        return out
    # Several processes: process r writes the r-th share of the batches (the batches of a single
    # process, so every image sees the same computation) to a hidden part file; rank 0 then copies
    # the parts, in order, into the store, which appears under its final name only when complete.
    parts = [ddp.part_path(out, r, world) for r in range(world)]
    if ddp.is_main():
        for stale in ddp.stale_parts(out):
            stale.unlink(missing_ok=True)
    ddp.barrier()
    write(parts[rank], [i for chunk in ddp.shard(list(_batches(ids, s.batch_size)), world, rank) for i in chunk])
    ddp.barrier()
    if ddp.is_main():
        try:
            with MapStoreWriter(out, **store_options) as writer:
                for part in parts:
                    with MapStore(part) as store:
                        writer.add_store(store)
            log.info("merged %d parts into %s: %d images", world, out, len(ids))
        finally:
            for part in parts:
                part.unlink(missing_ok=True)
    ddp.barrier()
    return out
