"""`drs bench labels` and `drs bench pseudo-labels`: pseudo-label generation (read maps and
saliency, apply the rule, write PNGs) and scoring, images/s with one worker and with all usable
cores, and the speed-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from drs.bench.machine import _load, _machine, machine
from drs.config.settings import PseudoLabelSettings
from drs.errors import UserError
from drs.labels.scoring import score_labels
from drs.labels.writer import generate_pseudo_labels
from drs.store.reader import MapStore
from drs.util.files import usable_cores


def bench_labels(dataset: Path, store: Path, rounds: int = 2, split: str = "train") -> dict:
    cores = usable_cores()
    rates = {1: [], cores: []}
    score = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for workers in rates:
                run = generate_pseudo_labels(store, Path(tmp) / f"l{r}-{workers}", dataset, workers=workers)
                rates[workers].append(run["num_images"] / run["seconds"])
            start = time.perf_counter()
            result = score_labels(Path(tmp) / f"l{r}-{cores}", dataset, split)
            score.append(result["num_images"] / (time.perf_counter() - start))
    return {
        "images": run["num_images"],
        "pseudo_labels_images_per_s": {f"workers={w}": max(v) for w, v in rates.items()},
        "score_labels_images_per_s": max(score),
        "load_average": _load(),
        "machine": machine(),
    }


def bench_pseudo_labels(store, dataset=None, images=64, repeats=3) -> dict:
    """Pseudo-label throughput on the store's first ``images`` images, 1 worker vs all cores (best of ``repeats``)."""
    if images < 1 or repeats < 1:
        raise UserError(f"--images and --repeats must be at least 1, got {images} and {repeats}")
    with MapStore(store) as opened:
        n = min(images, len(opened))
    if not n:
        raise UserError(f"{store}: map store holds no images")
    cores = min(usable_cores(), n)
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in dict.fromkeys((1, cores)):
            times = []
            for r in range(repeats):
                run = generate_pseudo_labels(
                    store,
                    Path(tmp) / f"labels-{workers}-{r}",
                    dataset,
                    PseudoLabelSettings(missing_saliency="threshold"),
                    workers=workers,
                    limit=n,
                )
                times.append(run["seconds"])
            best[workers] = min(times)
    single = n / best[1]
    parallel = n / best[cores]
    return {
        "images": n,
        "repeats": repeats,
        "workers": cores,
        "single_images_per_s": single,
        "parallel_images_per_s": parallel,
        "speedup": parallel / single,
        "threshold_images": run["threshold_images"],
        "machine": _machine(None),
    }


def format_pseudo_labels_result(r: dict) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"images: {r['images']}, best of {r['repeats']}",
            f"1 worker: {r['single_images_per_s']:.1f} img/s; {r['workers']} workers: "
            f"{r['parallel_images_per_s']:.1f} img/s (speed-up {r['speedup']:.2f}x)",
            f"machine: {m['processor']}, {m['usable_cores']} usable of {m['cpu_count']} cores",
        ]
    )
