"""`drs bench maps --pipeline-only`: extraction with a stand-in for the network.

A cached output of the classifier's shape (C x s/8 x s/8 per scale) stands in for the network:
decode, resize, upsampling, normalisation, uint8, compression, HDF5 writes. Each measurement runs
in a child process pinned to 1 core and to all usable cores (``os.sched_setaffinity``), in
alternating rounds, so that the ratio is measured under the same load. Peak resident memory is
reported (the child's own, and its loader workers').
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from drs.bench.machine import _load, _rss_peaks_mb, machine
from drs.bench.voc_set import STRIDE, repeated_split
from drs.config.settings import MapsSettings
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.inference.maps import write_store
from drs.util.files import usable_cores

MAPS = MapsSettings()  # the maps section's defaults (the schema's); the benchmarks flip


class CachedNetwork:
    """Stands in for the classifier: ``class_maps(x)`` returns a cached smooth output of the
    classifier's shape (B, C, ceil(s / STRIDE), ceil(s / STRIDE)) for a (B, 3, s, s) input."""

    def __init__(self, num_classes: int, scales, batch_size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.outputs = {}
        for s in scales:
            side = -(-s // STRIDE)
            coarse = torch.randn(batch_size, num_classes, max(2, side // 6), max(2, side // 6), generator=generator)
            self.outputs[s] = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False) * 3

    def class_maps(self, x):
        return self.outputs[x.shape[-1]][: x.shape[0]]

    def to(self, device):
        self.outputs = {s: t.to(device) for s, t in self.outputs.items()}
        return self


def pipeline_once(
    root: str, split: str, scales, flip: bool, batch_size: int, cores: int, workers: int, out: str, threads: int = 1
) -> dict:
    """One pipeline-only extraction in this process, pinned to ``cores`` cores, with ``threads``
    torch threads in the main process."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise UserError(f"--cores {cores}: only {len(allowed)} usable")
    os.sched_setaffinity(0, allowed[:cores])
    torch.set_num_threads(threads)

    voc = VOCDataset(root, split)
    model = CachedNetwork(voc.num_classes, scales, batch_size)
    options = dict(
        class_names=list(voc.class_names), scales=list(scales), flip=flip, stage="cam", split=split, dataset=root
    )
    before, main_before = os.times(), time.thread_time()
    start = time.perf_counter()
    settings = MapsSettings(scales=list(scales), flip=flip, batch_size=batch_size)
    write_store(Path(out), model, voc, voc.ids, settings, torch.device("cpu"), True, workers, options)
    seconds = time.perf_counter() - start
    after, main_cpu = os.times(), time.thread_time() - main_before
    n = len(voc)
    cpu = {  # CPU milliseconds per image: what the load of other processes does not change much
        "main_thread_ms": 1000 * main_cpu / n,
        "process_ms": 1000 * (after.user + after.system - before.user - before.system) / n,
        "loader_workers_ms": 1000
        * (after.children_user + after.children_system - before.children_user - before.children_system)
        / n,
    }
    return {
        "images": n,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "cores": cores,
        "workers": workers,
        "threads": threads,
        "cpu_per_image": cpu,
        **_rss_peaks_mb(),
    }


_CHILD = (
    "import json, sys; from drs.bench.pipeline import pipeline_once; "
    "print(json.dumps(pipeline_once(**json.loads(sys.argv[1]))))"
)


def _child(**kwargs) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(kwargs.get("threads", 1)))
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(kwargs)], capture_output=True, text=True, env=env, check=False
    )
    if run.returncode != 0:
        raise UserError(
            "pipeline benchmark child failed: "
            f"{run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
        )
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_pipeline(dataset, scales=MAPS.scales, flip=True, batch_size=MAPS.batch_size, rounds=3, split="train") -> dict:
    """Pipeline-only extraction, 1 core (in-process loading) vs all usable cores (as many loader
    workers and deflate threads), alternating, ``rounds`` times."""
    cores = usable_cores()
    results = {1: [], cores: []}
    loads = [_load()]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for n in dict.fromkeys((1, cores)):
                workers = 0 if n == 1 else n
                run = _child(
                    root=str(dataset),
                    split=split,
                    scales=list(scales),
                    flip=flip,
                    batch_size=batch_size,
                    cores=n,
                    workers=workers,
                    out=f"{tmp}/p{r}-{n}.h5",
                )
                results[n].append(run)
                os.unlink(f"{tmp}/p{r}-{n}.h5")
            loads.append(_load())
    rate = {n: [r["images_per_s"] for r in runs] for n, runs in results.items()}
    cpu = {
        n: {k: statistics.median(r["cpu_per_image"][k] for r in runs) for k in runs[0]["cpu_per_image"]}
        for n, runs in results.items()
    }
    ratios = [b / a for a, b in zip(rate[1], rate[cores])]
    return {
        "images": results[1][0]["images"],
        "scales": list(scales),
        "flip": flip,
        "batch_size": batch_size,
        "cores": cores,
        "one_core_images_per_s": rate[1],
        "all_cores_images_per_s": rate[cores],
        "speedup_per_round": ratios,
        "speedup_median": statistics.median(ratios),
        "cpu_ms_per_image": cpu,
        "peak_rss_mb": {n: max(r["peak_rss_mb"] for r in runs) for n, runs in results.items()},
        "load_average": loads,
        "machine": machine(),
    }


def memory_pipeline(
    dataset: Path, counts=(200, 2000), scales=MAPS.scales, flip=True, batch_size=MAPS.batch_size
) -> dict:
    """Peak resident memory of pipeline-only extraction (all cores) at each image count."""
    cores = usable_cores()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            split = repeated_split(dataset, count)
            run = _child(
                root=str(dataset),
                split=split,
                scales=list(scales),
                flip=flip,
                batch_size=batch_size,
                cores=cores,
                workers=cores,
                out=f"{tmp}/m{count}.h5",
            )
            out[count] = run
    return out
