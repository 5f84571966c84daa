"""`drs bench crf`: the dense CRF of stage 7 (the authors' parameters, :mod:`drs.evaluation.crf`) in
images/s at VOC's size (500 x 375, 21 classes) on synthetic inputs, in the calling process and on a
pool of all usable cores. On a shared machine the figure is a lower bound.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from drs.bench.machine import _machine
from drs.errors import UserError
from drs.evaluation.crf import REFERENCE, CRFPool, crf_labels


def _crf_inputs(n: int, height: int, width: int, classes: int):
    """Deterministic stand-ins for images and softmax scores: coloured rectangles, and scores that
    favour the right class under blur and noise (so that the CRF has work to do)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        labels = np.zeros((height, width), dtype=np.int64)
        for c in rng.integers(1, classes, size=4):
            top, left = rng.integers(0, height - 60), rng.integers(0, width - 60)
            labels[top : top + rng.integers(40, 200), left : left + rng.integers(40, 250)] = c
        colours = rng.integers(0, 256, size=(classes, 3))
        image = np.clip(colours[labels] + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
        logits = np.eye(classes, dtype=np.float32)[labels].transpose(2, 0, 1) * 3
        logits = ndimage.gaussian_filter(logits, (0, 6, 6)) + rng.normal(0, 0.5, logits.shape).astype(np.float32)
        prob = np.exp(logits - logits.max(0))
        out.append((image, (prob / prob.sum(0)).astype(np.float32)))
    return out


def bench_crf(
    images: int = 8, height: int = 375, width: int = 500, classes: int = 21, workers: int | None = None
) -> dict:
    """CRF images/s: one after another in this process, and through :class:`drs.evaluation.crf.CRFPool`."""
    if images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    inputs = _crf_inputs(images, height, width, classes)
    start = time.perf_counter()
    for image, prob in inputs:
        crf_labels(image, prob)
    single = images / (time.perf_counter() - start)
    with CRFPool(workers) as pool:
        pool.submit("warm-up", *inputs[0])  # start the processes outside the timing
        list(pool.drain())
        start = time.perf_counter()
        for n, (image, prob) in enumerate(inputs):
            pool.submit(n, image, prob)
        list(pool.drain())
        parallel = images / (time.perf_counter() - start)
        used = pool.workers
    return {
        "images": images,
        "size": [height, width],
        "classes": classes,
        "params": REFERENCE.as_dict(),
        "single_images_per_s": single,
        "workers": used,
        "parallel_images_per_s": parallel,
        "speedup": parallel / single,
        "machine": _machine(None),
        "note": "measured on a machine others may share: a lower bound",
    }


def format_crf_result(r: dict) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"dense CRF, {r['images']} images of {r['size'][1]}x{r['size'][0]}, {r['classes']} classes, "
            f"{r['params']['iterations']} iterations",
            f"1 process: {r['single_images_per_s']:.2f} img/s; {r['workers']} workers: "
            f"{r['parallel_images_per_s']:.2f} img/s (speed-up {r['speedup']:.2f}x)",
            f"machine: {m['processor']}, {m['usable_cores']} usable of {m['cpu_count']} cores ({r['note']})",
        ]
    )
