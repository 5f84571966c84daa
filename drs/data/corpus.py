"""An embedded classification corpus for pretraining the backbone (`drs corpus`).

The paper fine-tunes a VGG-16 pretrained on ImageNet: its filters are generic (edges, textures,
shapes) and were never taught the target classes' parts. This corpus plays ImageNet's role for the
synthetic set: each image holds one object whose class is the pair (outline, texture), over
many classes, with colours drawn at random so that no hue tells the class, on the same kind of
smooth background with clutter as `drs synth`. There is no part: the whole object carries the
class, so a network pretrained on it has learnt textures and outlines, not a part detector.

Written in VOC layout with image-level labels only: ``JPEGImages/``, ``class_names.txt`` and
``ImageSets/Segmentation/train.txt`` + ``train_labels.txt`` (id, class name), which
:class:`drs.data.voc.VOCDataset` reads, so `drs train-classifier` pretrains on it unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import draw, filters

from drs import __version__
from drs.data.synth import _background, _hsv, _random_shape, _stripes
from drs.data.voc import CLASS_NAMES_FILE, IMAGE_DIR, SPLIT_DIR
from drs.errors import UserError
from drs.util.files import publishing_dir

log = logging.getLogger("drs.corpus")

OUTLINES = ("disc", "ellipse", "box", "triangle")
TEXTURES = ("stripes0", "stripes45", "stripes90", "stripes135", "checker", "dots", "grain", "plain")
META_FILE = "corpus.json"


def class_names() -> list[str]:
    """Background first, then one class per (outline, texture) pair: 4 x 8 = 32 classes."""
    return ["background"] + [f"{o}-{t}" for o in OUTLINES for t in TEXTURES]


def _outline(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    r = rng.uniform(0.25, 0.42) * size
    cy, cx = rng.uniform(r * 0.8, size - r * 0.8, 2)
    rot = rng.uniform(0, np.pi)
    if kind == "disc":
        rr, cc = draw.disk((cy, cx), r, shape=mask.shape)
    elif kind == "ellipse":
        rr, cc = draw.ellipse(cy, cx, r * rng.uniform(0.35, 0.55), r, shape=mask.shape, rotation=rot)
    else:
        n = 4 if kind == "box" else 3
        angles = rot + np.arange(n) * 2 * np.pi / n
        rr, cc = draw.polygon(cy + r * np.sin(angles), cx + r * np.cos(angles), shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _texture(rng: np.random.Generator, where: np.ndarray, kind: str) -> np.ndarray:
    """(N, 3) colours for the N pixels of ``where``: two random colours in a class-specific pattern."""
    a = _hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.6, 0.95))
    b = _hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.15, 0.45))
    period = rng.uniform(3.0, 6.0)
    yy, xx = (c.astype(np.float32) for c in np.nonzero(where))
    if kind.startswith("stripes"):
        on = _stripes(where, np.deg2rad(float(kind[len("stripes") :])) + rng.normal(0, 0.1), period)
    elif kind == "checker":
        on = ((np.floor(yy / period) + np.floor(xx / period)) % 2).astype(bool)
    elif kind == "dots":
        on = np.hypot(yy % (2 * period) - period, xx % (2 * period) - period) < 0.55 * period
    elif kind == "grain":
        on = rng.random(len(yy)) < 0.5
    else:  # plain
        on = np.ones(len(yy), dtype=bool)
    return np.where(on[:, None], a, b) + rng.normal(0, 5, (len(yy), 3))


def generate_image(seed: int, index: int, size: int, clutter: int = 4) -> tuple[np.ndarray, int]:
    """One corpus image (HxWx3 uint8) and its class index (1..32)."""
    rng = np.random.default_rng([seed, 7, index])
    image = _background(rng, size)
    for _ in range(clutter):
        shape = _random_shape(rng, size, (0.08, 0.25))
        image[shape] = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.9)) + rng.normal(
            0, 6, (int(shape.sum()), 3)
        )
    cls = int(rng.integers(1, len(OUTLINES) * len(TEXTURES) + 1))
    outline, texture = OUTLINES[(cls - 1) // len(TEXTURES)], TEXTURES[(cls - 1) % len(TEXTURES)]
    mask = _outline(rng, size, outline)
    image[mask] = _texture(rng, mask, texture)
    image = filters.gaussian(image, sigma=0.6, channel_axis=-1, preserve_range=True)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), cls


def generate(out: str | Path, num_images: int, size: int, seed: int = 0) -> Path:
    """Write the corpus (split ``train``) to ``out`` atomically."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: already exists; remove it to generate again")
    if num_images < 1 or size < 16:
        raise UserError(f"corpus: need at least 1 image of at least 16 px; got {num_images} images of {size} px")
    names = class_names()
    start = time.perf_counter()
    with publishing_dir(out) as staging:
        (staging / IMAGE_DIR).mkdir(parents=True)
        (staging / SPLIT_DIR).mkdir(parents=True)
        ids, lines = [], []
        for i in range(num_images):
            image, cls = generate_image(seed, i, size)
            name = f"corpus_{i:05d}"
            Image.fromarray(image).save(staging / IMAGE_DIR / f"{name}.jpg", quality=92)
            ids.append(name)
            lines.append(f"{name} {names[cls]}")
        (staging / SPLIT_DIR / "train.txt").write_text("\n".join(ids) + "\n")
        (staging / SPLIT_DIR / "train_labels.txt").write_text("\n".join(lines) + "\n")
        (staging / CLASS_NAMES_FILE).write_text("\n".join(names) + "\n")
        meta = {
            "generator": "drs corpus",
            "version": __version__,
            "num_images": num_images,
            "image_size": size,
            "seed": seed,
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %d corpus images to %s in %.1f s", num_images, out, time.perf_counter() - start)
    return out
