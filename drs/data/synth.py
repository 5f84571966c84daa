"""The embedded synthetic dataset, written in PASCAL VOC layout.

Each object is a textured elliptic *body* with a small disc-shaped *part* (a "head") at one end.
The part carries the class: its two-colour stripes have a class-specific hue and angle. The body is
only weakly class-specific: its colour drifts towards a class tint by ``body_class_signal`` (0: no
class information, 1: as strong as the part's hue) under a larger per-object colour variation. A
classifier can therefore name the class from the part alone, and a plain CAM tends to stay on it:
the situation DRS is designed for (a dog told by its head).

Backgrounds are smooth colour fields with class-independent clutter shapes. Saliency maps imitate an
imperfect salient-object detector: object outlines jittered by erosion/dilation, some objects partly
missed, occasional salient clutter (false alarms), and blurred edges. Each image is generated from
its own random stream ``(seed, split, index)``, so the set is deterministic and generated in parallel.

Besides the VOC folders, ``SegmentationPart/`` holds each object's visible part (class index on part
pixels, 0 elsewhere) so later stages can split map quality into part / rest-of-object / background.
"""

from __future__ import annotations

import colorsys
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import draw, filters, morphology, segmentation

from drs import __version__
from drs.data.spline_zoom import upscale_cubic, upscale_linear
from drs.data.synth_spec import SynthSpec, class_hue
from drs.data.voc import CLASS_NAMES_FILE, IGNORE, IMAGE_DIR, PART_DIR, SALIENCY_DIR, SPLIT_DIR, save_label_png
from drs.errors import UserError
from drs.util.files import publishing_dir, usable_cores
from drs.util.processes import map_in_workers

log = logging.getLogger("drs.synth")

MASK_DIR = "SegmentationClass"
SPEC_FILE = "synthetic.json"
SPLITS = ("train", "val")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


# -- drawing ---------------------------------------------------------------------------------------
def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a side (square) or of a (height, width) pair."""
    return (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))


def _background(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """A smooth random colour field with fine grain (``size``: a side, or (height, width))."""
    h, w = _shape(size)
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    # = transform.resize(coarse, (h, w, 3), order=3, mode="reflect", anti_aliasing=False), bit for bit
    field_ = upscale_cubic(coarse, (h, w))
    field_ = 0.6 * field_ + 0.4 * field_.mean(axis=2, keepdims=True)  # muted colours
    return field_ + rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)


def _random_shape(rng: np.random.Generator, size: int | tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """A boolean mask of a random ellipse, rectangle or triangle (its radius scaled to the shorter side)."""
    h, w = _shape(size)
    mask = np.zeros((h, w), dtype=bool)
    r = rng.uniform(*scale) * min(h, w) / 2
    cy, cx = rng.uniform(0, (h, w))
    kind = rng.integers(3)
    if kind == 0:
        rr, cc = draw.ellipse(cy, cx, r, r * rng.uniform(0.3, 1.0), shape=mask.shape, rotation=rng.uniform(0, np.pi))
    else:
        n = 4 if kind == 1 else 3
        angles = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n + rng.normal(0, 0.2, n)
        rr, cc = draw.polygon(cy + r * np.sin(angles), cx + r * np.cos(angles), shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _stripes(where: np.ndarray, angle: float, period: float) -> np.ndarray:
    """The stripe phase (bool) at the pixels of the mask ``where``, in their row-major order."""
    yy, xx = (coord.astype(np.float32) for coord in np.nonzero(where))
    v = xx * np.cos(angle) + yy * np.sin(angle)
    return (np.floor(v / period) % 2).astype(bool)


@dataclass
class _Object:
    cls: int
    body: np.ndarray  # bool masks, full extent (before occlusion)
    part: np.ndarray


def _place_object(rng: np.random.Generator, spec: SynthSpec, cls: int) -> _Object:
    h, w = spec.shape
    length = rng.uniform(*spec.object_size)
    a = length / 2
    b = length * rng.uniform(0.28, 0.4)
    theta = rng.uniform(0, 2 * np.pi)
    d = max(3.0, spec.part_size * length)
    # keep the whole object (body and head) inside the image
    margin = a + d / 2
    sides = np.array([h, w], dtype=float)
    cy, cx = rng.uniform(np.minimum(margin, sides / 2), np.maximum(sides - margin, sides / 2))
    body = np.zeros((h, w), dtype=bool)
    rr, cc = draw.ellipse(cy, cx, b, a, shape=body.shape, rotation=theta)
    body[rr, cc] = True
    # the part sits on the end of the major axis, half outside the body like a head
    # (skimage's ellipse rotation runs the major axis along (-sin, cos) in (row, col))
    hy, hx = cy - (a - d / 4) * np.sin(theta), cx + (a - d / 4) * np.cos(theta)
    part = np.zeros((h, w), dtype=bool)
    rr, cc = draw.disk((hy, hx), d / 2, shape=part.shape)
    part[rr, cc] = True
    return _Object(cls, body & ~part, part)


def _paint_object(rng: np.random.Generator, spec: SynthSpec, image: np.ndarray, obj: _Object) -> None:
    h, w = spec.shape
    # body: a brownish-grey family shared by all classes, drifted towards a class tint
    base = _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.75))
    tint = _hsv(class_hue(obj.cls, spec.num_classes), 1.0, 1.0) - 127.5
    tint /= np.linalg.norm(tint) + 1e-6
    colour = base + spec.body_class_signal * 90.0 * tint
    # = transform.resize(..., (h, w), order=1, mode="reflect"), bit for bit
    shade = upscale_linear(rng.normal(1.0, 0.12, (6, 6)), (h, w))
    # the noise is drawn for the whole image (the random stream stays as it was), used on the body
    image[obj.body] = colour[None, :] * shade[obj.body][:, None] + rng.normal(0, 5, (h, w, 3))[obj.body]
    # part: class-specific hue and stripe angle, strong contrast
    hue = class_hue(obj.cls, spec.num_classes)
    light, dark = _hsv(hue, 0.9, 0.95), _hsv(hue, 0.9, 0.35)
    diameter = max(3.0, spec.part_size * np.mean(spec.object_size))
    angle = np.pi * (obj.cls - 1) / spec.num_classes
    stripes = _stripes(obj.part, angle, max(1.5, diameter / 5))
    image[obj.part] = np.where(stripes[:, None], light, dark) + rng.normal(0, 5, (h, w, 3))[obj.part]


def _jitter_outline(mask: np.ndarray, jitter: int) -> np.ndarray:
    """Dilate (jitter > 0) or erode (< 0) a bool mask by a disk of radius |jitter|, working on the
    mask's bounding box grown by |jitter| + 1: the same result as on the whole image, faster."""
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return out
    r = abs(jitter) + 1
    box = (slice(max(ys.min() - r, 0), ys.max() + r + 1), slice(max(xs.min() - r, 0), xs.max() + r + 1))
    op = morphology.dilation if jitter > 0 else morphology.erosion
    out[box] = op(mask[box], morphology.disk(abs(jitter)))
    return out


def _nonzero_box(array: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of the nonzero pixels grown by ``margin`` (clipped to the image); None if all zero."""
    ys, xs = np.nonzero(array)
    if not ys.size:
        return None
    return slice(max(ys.min() - margin, 0), ys.max() + margin + 1), slice(
        max(xs.min() - margin, 0), xs.max() + margin + 1
    )


def _blur_nonzero(sal: np.ndarray, sigma: float) -> np.ndarray:
    """``filters.gaussian(sal, sigma, preserve_range=True)``, computed on the nonzero pixels'
    bounding box grown past the kernel's reach: outside it the blur of zeros is exactly zero, and
    inside every window sees the same values (the 'nearest' border of the box repeats zeros)."""
    radius = int(4.0 * sigma + 0.5)  # skimage's truncate=4.0, as scipy sizes the kernel
    box = _nonzero_box(sal, radius + 1)
    if box is None:
        return filters.gaussian(sal, sigma=sigma, preserve_range=True)
    crop = filters.gaussian(sal[box], sigma=sigma, preserve_range=True)
    out = np.zeros(sal.shape, dtype=crop.dtype)
    out[box] = crop
    return out


def _saliency(
    rng: np.random.Generator, spec: SynthSpec, visible: list[np.ndarray], clutter: list[np.ndarray]
) -> np.ndarray:
    """An imperfect detector's output: 8-bit grey, 255 = salient."""
    s = spec.saliency
    h, w = spec.shape
    sal = np.zeros((h, w), dtype=np.float32)
    for mask in visible:
        m = mask.copy()
        jitter = int(rng.integers(-s.boundary_jitter, s.boundary_jitter + 1)) if s.boundary_jitter else 0
        if jitter:
            m = _jitter_outline(m, jitter)
        confidence = 1.0
        if rng.random() < s.miss_rate:
            # the detector misses the object beyond a random line through it
            ys, xs = np.nonzero(mask)
            if ys.size:
                angle = rng.uniform(0, 2 * np.pi)
                proj = ys * np.sin(angle) + xs * np.cos(angle)
                cut = np.quantile(proj, rng.uniform(0.4, 0.7))
                yy, xx = np.mgrid[0:h, 0:w]
                m &= (yy * np.sin(angle) + xx * np.cos(angle)) <= cut
                confidence = rng.uniform(0.6, 0.9)
        sal = np.maximum(sal, m.astype(np.float32) * confidence)
    if clutter and rng.random() < s.false_alarm_rate:
        alarm = clutter[int(rng.integers(len(clutter)))]
        sal = np.maximum(sal, alarm.astype(np.float32) * rng.uniform(0.5, 1.0))
    if s.blur_sigma > 0:
        sal = _blur_nonzero(sal, s.blur_sigma)
    return np.clip(np.round(sal * 255), 0, 255).astype(np.uint8)


def generate_image(spec: SynthSpec, split_index: int, index: int) -> dict[str, np.ndarray]:
    """One sample: image (HxWx3 uint8), mask and part (HxW uint8 class indices), saliency (HxW uint8)."""
    rng = np.random.default_rng([spec.seed, split_index, index])
    size = spec.shape
    image = _background(rng, size)
    clutter = []
    for _ in range(spec.clutter):
        shape = _random_shape(rng, size, (0.08, 0.25))
        colour = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.9))
        image[shape] = colour + rng.normal(0, 6, (int(shape.sum()), 3))
        clutter.append(shape)

    mask = np.zeros(size, dtype=np.uint8)
    part = np.zeros(size, dtype=np.uint8)
    owner = np.full(size, -1, dtype=np.int32)
    placed: list[_Object] = []
    count = int(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1))
    for _ in range(count):
        cls = int(rng.integers(1, spec.num_classes + 1))
        for _attempt in range(30):
            obj = _place_object(rng, spec, cls)
            full = obj.body | obj.part
            # limited occlusion: earlier objects keep most of their area and all of their part
            if all(
                ((o.body | o.part) & full).sum() < 0.25 * (o.body | o.part).sum() and not (o.part & full).any()
                for o in placed
            ):
                break
        else:
            continue  # no room left for this object
        _paint_object(rng, spec, image, obj)
        full = obj.body | obj.part
        owner[full] = len(placed)
        mask[full] = cls
        part[full] = 0
        part[obj.part] = cls
        placed.append(obj)
    if not placed:  # cannot happen with object_size <= image_size, but keep labels non-empty
        raise RuntimeError("no object could be placed")

    visible = [owner == k for k in range(len(placed))]
    saliency = _saliency(rng, spec, visible, clutter)
    # VOC-style void band on object outlines
    box = _nonzero_box(mask, 2)  # outlines lie on objects; a 2-pixel margin keeps every 3 x 3 window
    crop = mask[box]
    crop[segmentation.find_boundaries(crop, mode="inner") & (crop > 0)] = IGNORE
    image = filters.gaussian(image, sigma=0.6, channel_axis=-1, preserve_range=True)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return {"image": image, "mask": mask, "part": part, "saliency": saliency}


def image_id(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _write_one(args: tuple[SynthSpec, str, int, int, str]) -> None:
    spec, split, split_index, index, root = args
    sample = generate_image(spec, split_index, index)
    name = image_id(split, index)
    root_ = Path(root)
    Image.fromarray(sample["image"]).save(root_ / IMAGE_DIR / f"{name}.jpg", quality=92)
    save_label_png(root_ / MASK_DIR / f"{name}.png", sample["mask"])
    save_label_png(root_ / PART_DIR / f"{name}.png", sample["part"])
    Image.fromarray(sample["saliency"], mode="L").save(root_ / SALIENCY_DIR / f"{name}.png")


def generate(out: str | Path, spec: SynthSpec, workers: int | None = None) -> Path:
    """Write the dataset to ``out`` atomically (built under a hidden name, then renamed)."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: already exists; remove it to generate again")
    counts = {"train": spec.num_train, "val": spec.num_val}
    start = time.perf_counter()
    workers = workers or min(usable_cores(), 8)
    with publishing_dir(out) as staging:
        for sub in (IMAGE_DIR, MASK_DIR, PART_DIR, SALIENCY_DIR, str(SPLIT_DIR)):
            (staging / sub).mkdir(parents=True, exist_ok=True)
        jobs = [(spec, split, si, i, str(staging)) for si, split in enumerate(SPLITS) for i in range(counts[split])]
        map_in_workers(_write_one, jobs, workers, chunksize=16)  # workers die with this process
        for split in SPLITS:
            ids = [image_id(split, i) for i in range(counts[split])]
            (staging / SPLIT_DIR / f"{split}.txt").write_text("\n".join(ids) + "\n")
        trainval = [image_id(s, i) for s in SPLITS for i in range(counts[s])]
        (staging / SPLIT_DIR / "trainval.txt").write_text("\n".join(trainval) + "\n")
        (staging / CLASS_NAMES_FILE).write_text("\n".join(spec.class_names()) + "\n")
        # width / height only when set: a square set's record stays as it was before they existed
        record = {k: v for k, v in asdict(spec).items() if v is not None or k not in ("width", "height")}
        meta = {"generator": "drs synth", "version": __version__, "spec": record}
        (staging / SPEC_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    elapsed = time.perf_counter() - start
    log.info("wrote %d images to %s in %.1f s (%d workers)", len(jobs), out, elapsed, workers)
    return out
