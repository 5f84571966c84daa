"""Benchmarks on a VOC-sized synthetic set that ``drs bench`` makes itself (cached in a folder).

- :func:`voc_sized_set`: ``drs synth``'s generator at 500 px, 20 classes, 1-3 objects, each image
  cut to 500 x 375 (W x H) like most of VOC's; built once per (images, seed) under ``cache``.
- :func:`bench_pipeline`: ``drs bench maps --pipeline-only``, extraction with a stand-in for the
  network (a cached output of the classifier's shape, C x s/8 x s/8 per scale): decode, resize,
  upsampling, normalisation, uint8, compression, HDF5 writes. Each measurement runs in a child
  process pinned to 1 core and to all usable cores (``os.sched_setaffinity``), in alternating
  rounds, so that the ratio is measured under the same load. Peak resident memory is reported
  (the child's own, and its loader workers').
- :func:`bench_loaders`: each trainer's data pipeline (decode, augmentation, collation) through
  its dataset class and a DataLoader at its paper settings, images/s in-process, with one worker
  and with all workers.
- :func:`bench_labels`: ``drs pseudo-labels`` and ``drs score-labels`` at 500 x 375 with two
  classes per image, 1 worker vs all cores.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drs.errors import UserError
from drs.fileio import usable_cores
from drs.settings import MapsSettings

MAPS = MapsSettings()  # the maps section's defaults (the schema's); the benchmarks flip

WIDTH, HEIGHT = 500, 375
STRIDE = 8  # the classifier's output stride (VGG-16 without its 5th pooling stage)
DEFAULT_CACHE = Path("results") / "bench"


# -- the data --------------------------------------------------------------------------------------
def _spec(images: int, seed: int, side: int):
    from drs.data.synth_spec import SynthSpec

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
    from PIL import Image

    from drs.data.synth import generate_image, image_id
    from drs.data.voc import IMAGE_DIR, SALIENCY_DIR, save_label_png

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
    import shutil

    from drs.data.synth import image_id
    from drs.data.voc import CLASS_NAMES_FILE, IMAGE_DIR, SALIENCY_DIR, SPLIT_DIR
    from drs.workers import map_in_workers

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
    from drs.data.voc import IMAGE_DIR, SALIENCY_DIR, SPLIT_DIR

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


# -- pipeline-only extraction ------------------------------------------------------------------------
class CachedNetwork:
    """Stands in for the classifier: ``class_maps(x)`` returns a cached smooth output of the
    classifier's shape (B, C, ceil(s / STRIDE), ceil(s / STRIDE)) for a (B, 3, s, s) input."""

    def __init__(self, num_classes: int, scales, batch_size: int, seed: int = 0):
        import torch
        import torch.nn.functional as F

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


def _rss_peaks_mb() -> dict:
    """This process's peak resident memory (``VmHWM``: since its ``exec``; ``ru_maxrss`` would
    carry the forking parent's peak over), and its children's largest ``ru_maxrss`` (forked
    workers: includes what they shared with this process at the fork)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as f:
            own = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        pass
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": own, "peak_rss_children_mb": children}


def pipeline_once(
    root: str, split: str, scales, flip: bool, batch_size: int, cores: int, workers: int, out: str, threads: int = 1
) -> dict:
    """One pipeline-only extraction in this process, pinned to ``cores`` cores, with ``threads``
    torch threads in the main process."""
    import torch

    from drs.data.voc import VOCDataset
    from drs.extract import write_store

    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise UserError(f"--cores {cores}: only {len(allowed)} usable")
    os.sched_setaffinity(0, allowed[:cores])
    torch.set_num_threads(threads)
    import drs.data.transforms  # noqa: F401 (imports are not the pipeline: done before the clock starts)
    import drs.maps

    drs.maps._h5py()
    voc = VOCDataset(root, split)
    model = CachedNetwork(voc.num_classes, scales, batch_size)
    options = dict(
        class_names=list(voc.class_names), scales=list(scales), flip=flip, stage="cam", split=split, dataset=root
    )
    before, main_before = os.times(), time.thread_time()
    start = time.perf_counter()
    write_store(Path(out), model, voc, voc.ids, scales, flip, batch_size, torch.device("cpu"), True, workers, options)
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


_CHILD = "import json, sys; from drs.bench_voc import pipeline_once; print(json.dumps(pipeline_once(**json.loads(sys.argv[1]))))"


def _child(**kwargs) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(kwargs.get("threads", 1)))
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(kwargs)], capture_output=True, text=True, env=env, check=False
    )
    if run.returncode != 0:
        raise UserError(
            f"pipeline benchmark child failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
        )
    return json.loads(run.stdout.strip().splitlines()[-1])


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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


def machine() -> dict:
    import platform

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu_model": model or platform.processor(),
        "nproc": os.cpu_count(),
        "usable_cores": usable_cores(),
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


# -- trainer loaders ---------------------------------------------------------------------------------
def synthetic_store(dataset: Path, out: Path, split: str = "train", classes_per_image: int = 2) -> Path:
    """A map store of ``dataset``'s split at image size with ``classes_per_image`` classes per image
    (the image's own first, then others): blurred masks plus smooth noise, deterministic."""
    from scipy import ndimage

    from drs.data.fingerprint import split_fingerprint
    from drs.data.voc import VOCDataset
    from drs.maps import MapStoreWriter

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


def _loaders(dataset: Path, store: Path) -> dict:
    from drs.classifier import ClassifierSettings
    from drs.data.datasets import ClassificationSet, RefineSet, SegmentationSet
    from drs.data.transforms import classification_transform
    from drs.data.voc import VOCDataset
    from drs.refiner import RefinerSettings
    from drs.segmenter import SegmenterSettings

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
    import torch
    from torch.utils.data import DataLoader, Subset

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
    import torch

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


# -- pseudo labels and scoring -----------------------------------------------------------------------
def bench_labels(dataset: Path, store: Path, rounds: int = 2, split: str = "train") -> dict:
    from drs.pseudo_labels import generate_pseudo_labels
    from drs.score_labels import score_labels

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


_MEMORY_CHILD = """
import json, sys
from drs.bench_voc import _rss_peaks_mb, memory_child_run
memory_child_run(*sys.argv[1:])
print(json.dumps(_rss_peaks_mb()))
"""

#: the refiner the memory figure trains: config.yaml's (1/8 width, 3 stages, 128 px inputs, 112 px
#: crops), one epoch over every image, its loader with all usable cores as workers (as on CUDA)
MEMORY_REFINER = dict(
    width=0.125,
    batch_norm=True,
    extra_batch_norm=True,
    stages=3,
    pretrained="none",
    epochs=1,
    batch_size=8,
    lr_decay_epochs=[],
    input_size=128,
    crop_size=112,
    log_every=1000,
)


def memory_child_run(what: str, store: str, dataset: str, split: str, out: str) -> None:
    """One stage of :func:`stage_memory`, in the calling (fresh) process."""
    if what == "pseudo-labels":
        from drs.pseudo_labels import generate_pseudo_labels

        generate_pseudo_labels(store, out, dataset)
    elif what == "score-labels":
        from drs.score_labels import score_labels

        score_labels(out, dataset, split)
    elif what == "train-refiner":
        from drs.refiner import RefinerSettings, train_refiner

        settings = RefinerSettings(**MEMORY_REFINER, num_workers=usable_cores())
        train_refiner(dataset, split, store, out, settings)
    else:
        raise ValueError(what)


def stage_memory(dataset: Path, counts=(200, 2000), stages=("pseudo-labels", "score-labels")) -> dict:
    """Peak resident memory of each of ``stages`` (``pseudo-labels`` with all cores: the main
    process, and its workers'; ``score-labels``; ``train-refiner``: :data:`MEMORY_REFINER` on a
    map store of two classes per image), each in a fresh process, at each image count, with the
    seconds it took."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            split = repeated_split(dataset, count)
            store = synthetic_store(dataset, Path(tmp) / f"{split}.h5", split)
            peaks = {}
            for what in stages:
                target = Path(tmp) / ("labels-" + split if what != "train-refiner" else "refiner-" + split)
                start = time.perf_counter()
                run = subprocess.run(
                    [sys.executable, "-c", _MEMORY_CHILD, what, str(store), str(dataset), split, str(target)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if run.returncode != 0:
                    raise UserError(f"{what} memory benchmark failed: {run.stderr.strip()[-500:]}")
                rss = json.loads(run.stdout.strip().splitlines()[-1])
                key = what.replace("-", "_")
                peaks[key + "_peak_rss_mb"] = rss["peak_rss_mb"]
                peaks[key + "_workers_peak_rss_mb"] = rss["peak_rss_children_mb"]
                peaks[key + "_seconds"] = time.perf_counter() - start
            out[count] = peaks
    return out
