"""`drs bench maps`: performance of map extraction and of the map store, measured in one run.

- extraction throughput (images/s, end to end: decode, resize, forward, upsample, normalise,
  compress, write) against the bare batched forward pass at the same scales on the same images,
  as a ratio (noisy machines make ratios more telling than absolute figures);
- bytes per image in the store against the reference code's per-image ``.npy`` of all classes at
  uint8 (C x H x W bytes; also given for VOC's 20 classes);
- time to read one image's maps (random access, median and 95th percentile).

`drs bench pseudo-labels`: pseudo-label generation (read maps and saliency, apply the rule, write
PNGs) in images/s with one worker and with all usable cores, and the speed-up.

`drs bench crf`: the dense CRF of stage 7 (the authors' parameters, :mod:`drs.crf`) in images/s at
VOC's size (500 x 375, 21 classes) on synthetic inputs, in the calling process and on a pool of
all usable cores. On a shared machine the figure is a lower bound.

Results print as text and, with ``--out``, as JSON with the machine they were measured on.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from drs.argtypes import positive_int
from drs.errors import UserError
from drs.fileio import atomic_write_text, usable_cores
from drs.settings import MapsSettings

MAPS = MapsSettings()  # the maps section's defaults (the schema's)


def _machine(device=None) -> dict:
    """The machine a benchmark ran on; ``device=None``: a CPU-only benchmark (torch not imported)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
    }
    if device is None:
        info["device"] = "cpu"
        return info
    import torch

    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), device=str(device))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def bench_maps(
    checkpoint,
    dataset,
    split="train",
    scales=MAPS.scales,
    flip=MAPS.flip,
    images=64,
    batch_size=MAPS.batch_size,
    repeats=3,
) -> dict:
    import torch
    import torch.nn.functional as F

    from drs.classifier import load_classifier
    from drs.data.transforms import to_normalized_tensor
    from drs.data.voc import VOCDataset
    from drs.extract import extract_maps, forward_scales
    from drs.maps import MapStore
    from drs.train import pick_device

    voc = VOCDataset(dataset, split)
    ids = voc.ids[:images]
    if not ids:
        raise UserError(f"{dataset}: split {split} is empty")
    model, record = load_classifier(checkpoint)
    if list(voc.class_names) != list(record["class_names"]):  # before minutes of forward passes
        raise UserError(
            f"{checkpoint}: trained on classes {record['class_names']}, but {dataset} has {list(voc.class_names)}"
        )
    device = pick_device()
    model.to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # bare batched forward: inputs decoded and normalised beforehand, same scales, same batching
    tensors = [to_normalized_tensor(voc.load_image(i)) for i in ids]
    batches = [tensors[i : i + batch_size] for i in range(0, len(tensors), batch_size)]
    resized = [
        [
            torch.stack([F.interpolate(t[None], size=(s, s), mode="bilinear", align_corners=False)[0] for t in b]).to(
                device
            )
            for s in scales
        ]
        for b in batches
    ]
    with torch.inference_mode():
        forward_scales(model, batches[0], scales, flip, device)  # warm-up
        sync()
        forward_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for per_scale in resized:
                for x in per_scale:
                    with torch.autocast(device.type, enabled=device.type == "cuda"):
                        model.class_maps(x)
                        if flip:
                            model.class_maps(x.flip(-1))
            sync()
            forward_times.append(time.perf_counter() - start)

    extract_times = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            store = Path(tmp) / f"bench{r}.h5"
            start = time.perf_counter()
            extract_maps(checkpoint, dataset, split, store, scales, flip, batch_size, limit=len(ids))
            extract_times.append(time.perf_counter() - start)
        file_bytes = store.stat().st_size
        reads = []
        with MapStore(store) as s:
            order = list(s.ids)
            random.Random(0).shuffle(order)
            for image_id in order * 3:
                start = time.perf_counter()
                s.read(image_id)
                reads.append((time.perf_counter() - start) * 1000)
            sizes = [s.header(i)[1] for i in s.ids]
            num_classes = s.num_classes

    n = len(ids)
    forward = n / min(forward_times)
    extract = n / min(extract_times)
    pixels = statistics.mean(h * w for h, w in sizes)
    per_image = file_bytes / n
    reads.sort()
    return {
        "images": n,
        "scales": list(scales),
        "flip": flip,
        "batch_size": batch_size,
        "forward_images_per_s": forward,
        "extract_images_per_s": extract,
        "extract_to_forward_ratio": extract / forward,
        "store_bytes_per_image": per_image,
        "dense_bytes_per_image": num_classes * pixels,
        "store_to_dense_ratio": per_image / (num_classes * pixels),
        "store_to_dense_voc20_ratio": per_image / (20 * pixels),
        "read_ms_median": statistics.median(reads),
        "read_ms_p95": reads[int(0.95 * (len(reads) - 1))],
        "machine": _machine(device),
    }


def format_result(r: dict) -> str:
    return "\n".join(
        [
            f"images: {r['images']} at scales {r['scales']}{' + flip' if r['flip'] else ''}, batch {r['batch_size']}",
            f"bare forward: {r['forward_images_per_s']:.1f} img/s; extraction: {r['extract_images_per_s']:.1f} img/s "
            f"({100 * r['extract_to_forward_ratio']:.0f}% of the bare forward pass)",
            f"store: {r['store_bytes_per_image'] / 1024:.1f} KiB/image = 1/{1 / r['store_to_dense_ratio']:.1f} of a dense "
            f"C x H x W uint8 array (1/{1 / r['store_to_dense_voc20_ratio']:.1f} at VOC's 20 classes)",
            f"read one image: median {r['read_ms_median']:.2f} ms, p95 {r['read_ms_p95']:.2f} ms",
            f"machine: {r['machine']['processor']}, {r['machine']['cpu_count']} cores, {r['machine']['device']}, torch {r['machine']['torch']}",
        ]
    )


def bench_pseudo_labels(store, dataset=None, images=64, repeats=3) -> dict:
    """Pseudo-label throughput on the store's first ``images`` images, 1 worker vs all cores (best of ``repeats``)."""
    from drs.maps import MapStore
    from drs.pseudo_labels import generate_pseudo_labels
    from drs.settings import PseudoLabelSettings

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


def _crf_inputs(n: int, height: int, width: int, classes: int):
    """Deterministic stand-ins for images and softmax scores: coloured rectangles, and scores that
    favour the right class under blur and noise (so that the CRF has work to do)."""
    import numpy as np
    from scipy import ndimage

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
    """CRF images/s: one after another in this process, and through :class:`drs.crf.CRFPool`."""
    from drs.crf import REFERENCE, CRFPool, crf_labels

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


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmarks (map extraction, the map store, pseudo-label generation)", description=__doc__
    )
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    m = what.add_parser("maps", help="extraction throughput vs bare forward; store size and read time")
    m.add_argument("--model", help="classifier checkpoint (model.pt); not with --pipeline-only")
    m.add_argument("--dataset", help="dataset folder in VOC layout (default: the benchmark's own VOC-sized set)")
    m.add_argument("--split", default="train")
    m.add_argument("--scales", type=positive_int, nargs="+", default=MAPS.scales, help="default: the maps section's")
    m.add_argument("--flip", action="store_true")
    m.add_argument("--images", type=positive_int, default=64, help="number of images (default 64)")
    m.add_argument("--batch-size", type=positive_int, default=MAPS.batch_size)
    m.add_argument("--repeats", type=positive_int, default=3, help="best of this many runs (--pipeline-only: rounds)")
    m.add_argument(
        "--pipeline-only",
        action="store_true",
        help="everything but the network (a cached output of its shape stands in): 1 core vs all cores",
    )
    m.add_argument(
        "--memory",
        type=positive_int,
        nargs="*",
        metavar="N",
        help="with --pipeline-only: also the peak resident memory at these image counts (e.g. 200 2000)",
    )
    _voc_set_arguments(m)
    m.add_argument("--out", help="also write the result as JSON")
    m.set_defaults(func=_run)
    lo = what.add_parser(
        "loaders", help="each trainer's data pipeline (decode, augmentation, collation): img/s by workers"
    )
    lo.add_argument("--images", type=positive_int, default=160, help="images per measurement (default 160)")
    lo.add_argument("--repeats", type=positive_int, default=2, help="best of this many rounds")
    _voc_set_arguments(lo)
    lo.add_argument(
        "--memory",
        type=positive_int,
        nargs="*",
        metavar="N",
        help="also the refiner's training peak memory at these image counts (one epoch, config.yaml's refiner)",
    )
    lo.add_argument("--out", help="also write the result as JSON")
    lo.set_defaults(func=_run_loaders)
    la = what.add_parser("labels", help="pseudo-labels and score-labels at VOC size, 2 classes per image")
    la.add_argument("--repeats", type=positive_int, default=2, help="best of this many rounds")
    _voc_set_arguments(la)
    la.add_argument(
        "--memory", type=positive_int, nargs="*", metavar="N", help="also peak memory at these image counts"
    )
    la.add_argument("--out", help="also write the result as JSON")
    la.set_defaults(func=_run_labels)
    pl = what.add_parser("pseudo-labels", help="pseudo-label generation throughput: 1 worker vs all cores")
    pl.add_argument("--store", required=True, help="map store (.h5)")
    pl.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    pl.add_argument("--images", type=int, default=64, help="number of images (default 64)")
    pl.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    pl.add_argument("--out", help="also write the result as JSON")
    pl.set_defaults(func=_run_pseudo_labels)
    c = what.add_parser("crf", help="dense-CRF throughput at VOC size: 1 process vs a pool of all cores")
    c.add_argument("--images", type=int, default=8, help="number of images (default 8)")
    c.add_argument("--height", type=int, default=375)
    c.add_argument("--width", type=int, default=500)
    c.add_argument("--classes", type=int, default=21)
    c.add_argument("--workers", type=int, help="pool size (default: every usable core)")
    c.add_argument("--out", help="also write the result as JSON")
    c.set_defaults(func=_run_crf)


def _voc_set_arguments(p) -> None:
    p.add_argument("--set-images", type=positive_int, default=300, help="size of the benchmark's own set (default 300)")
    p.add_argument(
        "--image-size", type=_size, default=(500, 375), metavar="WxH", help="its image size (default 500x375)"
    )
    p.add_argument(
        "--cache", default="results/bench", help="folder the set is kept in between runs (default results/bench)"
    )


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise __import__("argparse").ArgumentTypeError(f"expected WxH, e.g. 500x375, got {text!r}") from None
    if min(width, height) < 32:
        raise __import__("argparse").ArgumentTypeError(f"{text}: both sides must be at least 32")
    return width, height


def _voc_set(args) -> Path:
    from drs.bench_voc import voc_sized_set

    return voc_sized_set(args.cache, args.set_images, size=args.image_size)


def _voc_set_and_store(args) -> tuple[Path, Path]:
    """The benchmark's own VOC-sized set and its map store of two classes per image (both cached)."""
    from drs.bench_voc import synthetic_store

    dataset = _voc_set(args)
    return dataset, synthetic_store(dataset, dataset.parent / f"{dataset.name}-maps2.h5")


def _print_load_and_machine(r: dict) -> None:
    print(f"load average: {r['load_average']}; machine: {r['machine']['cpu_model']}, nproc {r['machine']['nproc']}")


def _write_json(path, result) -> None:
    if path:
        atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")


def _run_pipeline(args) -> int:
    from drs.bench_voc import bench_pipeline, memory_pipeline

    if args.model:
        raise UserError("--pipeline-only measures everything but the network: leave out --model")
    dataset = Path(args.dataset) if args.dataset else _voc_set(args)
    r = bench_pipeline(dataset, args.scales, args.flip, args.batch_size, args.repeats, args.split)
    print(
        f"pipeline only (no network), {r['images']} images at scales {r['scales']}{' + flip' if r['flip'] else ''}, "
        f"batch {r['batch_size']}\n"
        f"1 core: {' / '.join(f'{v:.1f}' for v in r['one_core_images_per_s'])} img/s; {r['cores']} cores: "
        f"{' / '.join(f'{v:.1f}' for v in r['all_cores_images_per_s'])} img/s; speed-up per round "
        f"{' / '.join(f'{v:.2f}' for v in r['speedup_per_round'])}x (median {r['speedup_median']:.2f}x)\n"
        + "".join(
            f"CPU ms/image with {n} core(s): main thread {c['main_thread_ms']:.1f}, process {c['process_ms']:.1f}, "
            f"loader workers {c['loader_workers_ms']:.1f}\n"
            for n, c in r["cpu_ms_per_image"].items()
        )
        + f"load average before and after each round: {r['load_average']}\n"
        f"machine: {r['machine']['cpu_model']}, nproc {r['machine']['nproc']}, {r['machine']['usable_cores']} usable"
    )
    if args.memory:
        r["memory"] = memory_pipeline(dataset, args.memory, args.scales, args.flip, args.batch_size)
        for count, run in r["memory"].items():
            print(
                f"{count} images: peak RSS {run['peak_rss_mb']:.0f} MB (loader workers: {run['peak_rss_children_mb']:.0f} MB), {run['images_per_s']:.1f} img/s"
            )
    _write_json(args.out, r)
    return 0


def _run_loaders(args) -> int:
    from drs.bench_voc import bench_loaders, stage_memory

    dataset, store = _voc_set_and_store(args)
    r = bench_loaders(dataset, store, args.images, args.repeats)
    for name, rates in r["loaders"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in rates.items()))
    if args.memory:
        r["memory"] = stage_memory(dataset, args.memory, ("train-refiner",))
        for count, run in r["memory"].items():
            print(
                f"{count} images: refiner training (one epoch) peak RSS {run['train_refiner_peak_rss_mb']:.0f} MB, "
                f"its loader workers {run['train_refiner_workers_peak_rss_mb']:.0f} MB, {run['train_refiner_seconds']:.0f} s"
            )
    _print_load_and_machine(r)
    _write_json(args.out, r)
    return 0


def _run_labels(args) -> int:
    from drs.bench_voc import bench_labels, stage_memory

    dataset, store = _voc_set_and_store(args)
    r = bench_labels(dataset, store, args.repeats)
    rates = r["pseudo_labels_images_per_s"]
    print(
        f"{r['images']} images of {args.image_size[0]}x{args.image_size[1]}, 2 classes each: pseudo-labels "
        + ", ".join(f"{k} {v:.1f} img/s" for k, v in rates.items())
        + f"; score-labels {r['score_labels_images_per_s']:.1f} img/s"
    )
    if args.memory:
        r["memory"] = stage_memory(dataset, args.memory)
        for count, run in r["memory"].items():
            print(
                f"{count} images: peak RSS pseudo-labels {run['pseudo_labels_peak_rss_mb']:.0f} MB, score-labels {run['score_labels_peak_rss_mb']:.0f} MB"
            )
    _print_load_and_machine(r)
    _write_json(args.out, r)
    return 0


def _run(args) -> int:
    if args.pipeline_only:
        return _run_pipeline(args)
    if not args.model:
        raise UserError("bench maps: --model is required (or --pipeline-only)")
    if not args.dataset:
        args.dataset = str(_voc_set(args))
    result = bench_maps(
        args.model, args.dataset, args.split, args.scales, args.flip, args.images, args.batch_size, args.repeats
    )
    print(format_result(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _run_pseudo_labels(args) -> int:
    result = bench_pseudo_labels(args.store, args.dataset, args.images, args.repeats)
    print(format_pseudo_labels_result(result))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


def _run_crf(args) -> int:
    result = bench_crf(args.images, args.height, args.width, args.classes, args.workers)
    print(format_crf_result(result))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0
