"""Benchmarks, each measured in one run and recorded with the machine (docs/benchmarks.md).

- ``maps``: extraction throughput against the bare forward pass, the store's size and read time;
  with ``--pipeline-only`` everything but the network, 1 core against all cores;
- ``loaders``: each trainer's data pipeline, images/s by loader workers;
- ``labels`` and ``pseudo-labels``: pseudo-label generation and scoring, 1 worker against all cores;
- ``crf``: the dense CRF at VOC size, 1 process against a pool of all cores;
- ``gpu``: every GPU stage at the reference's sizes (img/s, peak memory, input-bound or not) and the
  projected GPU-hours of the full VOC run (:mod:`drs.bench.gpu`; ``--tiny`` runs on a CPU).

Results print as text and, with ``--out``, as JSON with the machine they were measured on. Without
``--dataset`` a benchmark makes its own VOC-sized synthetic set (cached under ``--cache``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drs.bench.crf import bench_crf, format_crf_result
from drs.bench.gpu import STAGES as GPU_STAGES
from drs.bench.gpu import VOC_CONFIG as GPU_CONFIG
from drs.bench.gpu import bench_gpu, format_markdown
from drs.bench.labels import bench_labels, bench_pseudo_labels, format_pseudo_labels_result
from drs.bench.loaders import bench_loaders
from drs.bench.maps import bench_maps, format_result
from drs.bench.memory import stage_memory
from drs.bench.pipeline import bench_pipeline, memory_pipeline
from drs.bench.voc_set import synthetic_store, voc_sized_set
from drs.config.settings import MapsSettings
from drs.errors import UserError
from drs.util.argtypes import non_negative_int, positive_int
from drs.util.files import atomic_write_text

MAPS = MapsSettings()  # the maps section's defaults (the schema's)


def add_arguments(p) -> None:
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
    m.set_defaults(bench=_run_maps)
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
    lo.set_defaults(bench=_run_loaders)
    la = what.add_parser("labels", help="pseudo-labels and score-labels at VOC size, 2 classes per image")
    la.add_argument("--repeats", type=positive_int, default=2, help="best of this many rounds")
    _voc_set_arguments(la)
    la.add_argument(
        "--memory", type=positive_int, nargs="*", metavar="N", help="also peak memory at these image counts"
    )
    la.add_argument("--out", help="also write the result as JSON")
    la.set_defaults(bench=_run_labels)
    pl = what.add_parser("pseudo-labels", help="pseudo-label generation throughput: 1 worker vs all cores")
    pl.add_argument("--store", required=True, help="map store (.h5)")
    pl.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    pl.add_argument("--images", type=int, default=64, help="number of images (default 64)")
    pl.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    pl.add_argument("--out", help="also write the result as JSON")
    pl.set_defaults(bench=_run_pseudo_labels)
    c = what.add_parser("crf", help="dense-CRF throughput at VOC size: 1 process vs a pool of all cores")
    c.add_argument("--images", type=int, default=8, help="number of images (default 8)")
    c.add_argument("--height", type=int, default=375)
    c.add_argument("--width", type=int, default=500)
    c.add_argument("--classes", type=int, default=21)
    c.add_argument("--workers", type=int, help="pool size (default: every usable core)")
    c.add_argument("--out", help="also write the result as JSON")
    c.set_defaults(bench=_run_crf)
    g = what.add_parser(
        "gpu", help="every GPU stage at VOC size: img/s, peak memory, input- or GPU-bound; projected GPU-hours"
    )
    g.add_argument(
        "--stages",
        nargs="+",
        type=_gpu_stage,
        default=list(GPU_STAGES),
        metavar="STAGE",
        help=f"stages to run (default all): {', '.join(GPU_STAGES)}",
    )
    g.add_argument("--steps", type=positive_int, help="timed steps per stage (default 15; --tiny 2)")
    g.add_argument("--warmup", type=non_negative_int, help="untimed steps first (default min(3, steps); --tiny 1)")
    g.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda where there is one")
    g.add_argument(
        "--amp", choices=("auto", "bf16", "fp16", "off"), default="auto", help="CUDA only; auto: bf16 where supported"
    )
    g.add_argument("--tiny", action="store_true", help="tiny widths, sizes and steps: a CPU smoke run (under a minute)")
    g.add_argument("--config", default=str(GPU_CONFIG), help="the VOC config whose settings are measured")
    g.add_argument("--cache", default="results/bench", help="folder the synthetic set is kept in")
    g.add_argument("--out", help="also write the result as JSON")
    g.add_argument("--markdown", help="write the table here instead of printing it")
    g.set_defaults(bench=_run_gpu)


def _gpu_stage(name: str) -> str:
    if name not in GPU_STAGES:
        raise argparse.ArgumentTypeError(f"unknown stage {name!r}; expected one of: {', '.join(GPU_STAGES)}")
    return name


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
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 500x375, got {text!r}") from None
    if min(width, height) < 32:
        raise argparse.ArgumentTypeError(f"{text}: both sides must be at least 32")
    return width, height


def _voc_set(args) -> Path:
    return voc_sized_set(args.cache, args.set_images, size=args.image_size)


def _voc_set_and_store(args) -> tuple[Path, Path]:
    """The benchmark's own VOC-sized set and its map store of two classes per image (both cached)."""
    dataset = _voc_set(args)
    return dataset, synthetic_store(dataset, dataset.parent / f"{dataset.name}-maps2.h5")


def _print_load_and_machine(r: dict) -> None:
    print(f"load average: {r['load_average']}; machine: {r['machine']['cpu_model']}, nproc {r['machine']['nproc']}")


def _write_json(path, result) -> None:
    if path:
        atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")


def _run_pipeline(args) -> int:
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
                f"{count} images: peak RSS {run['peak_rss_mb']:.0f} MB (loader workers: "
                f"{run['peak_rss_children_mb']:.0f} MB), {run['images_per_s']:.1f} img/s"
            )
    _write_json(args.out, r)
    return 0


def _run_loaders(args) -> int:
    dataset, store = _voc_set_and_store(args)
    r = bench_loaders(dataset, store, args.images, args.repeats)
    for name, rates in r["loaders"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in rates.items()))
    if args.memory:
        r["memory"] = stage_memory(dataset, args.memory, ("train-refiner",))
        for count, run in r["memory"].items():
            print(
                f"{count} images: refiner training (one epoch) peak RSS {run['train_refiner_peak_rss_mb']:.0f} MB, "
                f"its loader workers {run['train_refiner_workers_peak_rss_mb']:.0f} MB, "
                f"{run['train_refiner_seconds']:.0f} s"
            )
    _print_load_and_machine(r)
    _write_json(args.out, r)
    return 0


def _run_labels(args) -> int:
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
                f"{count} images: peak RSS pseudo-labels {run['pseudo_labels_peak_rss_mb']:.0f} MB, score-labels "
                f"{run['score_labels_peak_rss_mb']:.0f} MB"
            )
    _print_load_and_machine(r)
    _write_json(args.out, r)
    return 0


def _run_maps(args) -> int:
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
    _write_json(args.out, result)
    return 0


def _run_pseudo_labels(args) -> int:
    result = bench_pseudo_labels(args.store, args.dataset, args.images, args.repeats)
    print(format_pseudo_labels_result(result))
    _write_json(args.out, result)
    return 0


def _run_crf(args) -> int:
    result = bench_crf(args.images, args.height, args.width, args.classes, args.workers)
    print(format_crf_result(result))
    _write_json(args.out, result)
    return 0


def _run_gpu(args) -> int:
    result = bench_gpu(args.stages, args.steps, args.warmup, args.device, args.amp, args.tiny, args.cache, args.config)
    table = format_markdown(result)
    if args.markdown:
        atomic_write_text(args.markdown, table)
        print(f"wrote {args.markdown}")
    else:
        print(table, end="")
    _write_json(args.out, result)
    return 0


def run(args) -> int:
    return args.bench(args)
