"""The benchmarks' own data: a VOC-sized synthetic set and a map store of it, made once and cached.

- :func:`voc_sized_set`: ``drs synth``'s generator at 500 px, 20 classes, 1-3 objects, each image
  cut to 500 x 375 (W x H) like most of VOC's; built once per (images, seed) under ``cache``;
- :func:`repeated_split`: a split of any image count (hard-linked copies), for memory figures;
- :func:`synthetic_store`: a map store of two classes per image at image size.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from drs.data.fingerprint import split_fingerprint
from drs.data.synth import generate_image, image_id
from drs.data.synth_spec import SynthSpec
from drs.data.voc import CLASS_NAMES_FILE, IMAGE_DIR, SALIENCY_DIR, SPLIT_DIR, VOCDataset, save_label_png
from drs.store.writer import MapStoreWriter
from drs.util.files import usable_cores
from drs.util.processes import map_in_workers

WIDTH, HEIGHT = 500, 375
STRIDE = 8  # the classifier's output stride (VGG-16 without its 5th pooling stage)
DEFAULT_CACHE = Path("results") / "bench"


def _spec(images: int, seed: int, side: int):
    return SynthSpec(
        seed=seed,
        num_train=images,
        num_val=1,
        image_size=side,
        num_classes=20,
        objects_per_image=(1, 3),
        object_size=(max(8, side * 9 // 50), max(8, side * 22 // 50)),
        clutter=6,
    )


def _write_voc_sized(args) -> None:
    spec, index, root, width, height = args
    sample = generate_image(spec, 0, index)
    side = spec.image_size
    cut = (slice(0, height), slice(0, width))
    if not (sample["mask"][cut] % 255).any():  # every object outside the cut: keep the other corner
        cut = (slice(side - height, side), slice(side - width, side))
    name = image_id("train", index)
    root = Path(root)
    Image.fromarray(sample["image"][cut]).save(root / IMAGE_DIR / f"{name}.jpg", quality=92)
    save_label_png(root / "SegmentationClass" / f"{name}.png", sample["mask"][cut])
    Image.fromarray(sample["saliency"][cut], mode="L").save(root / SALIENCY_DIR / f"{name}.png")


def voc_sized_set(cache: str | Path = DEFAULT_CACHE, images: int = 300, seed: int = 0, size=(WIDTH, HEIGHT)) -> Path:
    """The benchmark's dataset (split ``train``) of ``size`` (W, H) images, made on first use and
    then reused: the generator's square images of side max(W, H), cut to W x H."""
    width, height = size
    root = Path(cache) / f"voc{width}x{height}-n{images}-s{seed}"
    if (root / SPLIT_DIR / "train.txt").exists():
        return root
    spec = _spec(images, seed, max(width, height))
    staging = root.parent / f".{root.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for sub in (IMAGE_DIR, "SegmentationClass", SALIENCY_DIR, str(SPLIT_DIR)):
        (staging / sub).mkdir(parents=True)
    map_in_workers(
        _write_voc_sized, [(spec, i, str(staging), width, height) for i in range(images)], usable_cores(), chunksize=8
    )
    (staging / CLASS_NAMES_FILE).write_text("\n".join(spec.class_names()) + "\n")
    (staging / SPLIT_DIR / "train.txt").write_text("\n".join(image_id("train", i) for i in range(images)) + "\n")
    os.replace(staging, root)
    return root


def repeated_split(root: Path, count: int) -> str:
    """A split of ``count`` images: the set's own, then hard-linked copies under new ids (for
    memory figures at image counts above the set's own). Returns the split's name."""
    name = f"x{count}"
    if (root / SPLIT_DIR / f"{name}.txt").exists():
        return name
    base = (root / SPLIT_DIR / "train.txt").read_text().split()
    ids = []
    for n in range(count):
        source = base[n % len(base)]
        if n < len(base):
            ids.append(source)
            continue
        copy = f"copy{n:06d}"
        for folder, ext in ((IMAGE_DIR, "jpg"), ("SegmentationClass", "png"), (SALIENCY_DIR, "png")):
            target = root / folder / f"{copy}.{ext}"
            if not target.exists():
                os.link(root / folder / f"{source}.{ext}", target)
        ids.append(copy)
    (root / SPLIT_DIR / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return name


def synthetic_store(dataset: Path, out: Path, split: str = "train", classes_per_image: int = 2) -> Path:
    """A map store of ``dataset``'s split at image size with ``classes_per_image`` classes per image
    (the image's own first, then others): blurred masks plus smooth noise, deterministic."""
    if out.exists():
        return out
    voc = VOCDataset(dataset, split)
    rng = np.random.default_rng(0)
    options = dict(
        class_names=list(voc.class_names),
        scales=[0],
        flip=False,
        stage="cam",
        split=split,
        dataset=str(dataset),
        dataset_fingerprint=split_fingerprint(voc, ("images", "masks"), voc.ids).as_dict(),
    )
    with MapStoreWriter(out, **options, compress_workers=usable_cores()) as writer:
        for image_id in voc.ids:
            mask = voc.load_mask(image_id)
            own = voc.labels(image_id).tolist()
            others = [c for c in rng.permutation(np.arange(1, voc.num_classes + 1)).tolist() if c not in own]
            classes = (own + others)[:classes_per_image]
            maps = []
            for c in classes:
                cue = ndimage.zoom(rng.random((8, 8)), (mask.shape[0] / 8, mask.shape[1] / 8), order=1)[
                    : mask.shape[0], : mask.shape[1]
                ]
                maps.append(np.clip(0.8 * (mask == c) + 0.4 * cue, 0, 1))
            writer.add(image_id, classes, np.stack(maps).astype(np.float32))
    return out
