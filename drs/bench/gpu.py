"""`drs bench gpu`: every GPU stage of the pipeline at the reference's sizes, and the GPU-hours of a VOC run.

On the benchmarks' own VOC-sized synthetic images (:mod:`drs.bench.voc_set`; only speed and memory
matter), each stage runs a few untimed warm-up steps, then ``steps`` timed ones, with the project's
own pieces: its model builders, its datasets and training loader (:func:`drs.training.scaffold.data_loader`:
workers, pinned memory), each trainer's loss and optimizer, the loop's loss reduction and AMP with
a GradScaler for float16 (bfloat16 where the GPU has it: :func:`drs.runtime.device.amp_dtype`),
extraction's loader and map building into a map store, and the evaluation's predictor and crop.
The settings are the VOC run's: the schema's defaults under ``config/voc2012.yaml``, read at run
time (``yaml`` and :mod:`drs.config.settings`, neither of which imports jsonschema or snakemake).

Per stage: images/s, seconds per (optimizer) step, peak GPU memory (``max_memory_allocated``,
reset per stage), and the share of the steps' time spent blocked on the next batch (the loader;
for evaluation, decoding and cropping in the main thread, as ``drs evaluate`` does): above
:data:`INPUT_BOUND` the stage is input-bound. The device is synchronised only at the timed
window's two ends, and the bench's own loop makes no host synchronisation per step (the losses
stay on the device until the end). From these, the projected hours of the full VOC run
(:func:`projection`). The dense CRF runs on the CPU cores through :func:`drs.bench.crf.bench_crf`
(skipped, with the reason recorded, where pydensecrf is not installed).
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import Subset

from drs.bench.crf import bench_crf
from drs.bench.machine import _machine, machine
from drs.bench.voc_set import repeated_split, synthetic_store, voc_sized_set
from drs.config.settings import (
    ClassifierSettings,
    DeepLabV2Settings,
    EvaluationSettings,
    MapsSettings,
    RefinerSettings,
    SegmenterSettings,
)
from drs.data.datasets import ClassificationSet, DeepLabV2Set, RefineSet, SegmentationSet
from drs.data.transforms import classification_transform
from drs.data.voc import VOCDataset, save_label_png
from drs.errors import UserError
from drs.evaluation.metrics import SegmentationScore
from drs.inference.maps import decoded_batches, default_workers, maps_of_batches
from drs.inference.segment import Predictor, reference_crop
from drs.models.deeplabv2 import deeplabv2
from drs.runtime.device import amp_dtype
from drs.store.writer import MapStoreWriter
from drs.training.classifier import build_classifier, classifier_loss, classifier_optimizer
from drs.training.deeplabv2 import deeplabv2_loss, deeplabv2_optimizer
from drs.training.loop import _batch_loss
from drs.training.refiner import build_refiner, refiner_loss, refiner_optimizer
from drs.training.scaffold import data_loader
from drs.training.segmenter import build_segmenter, segmenter_loss, segmenter_optimizer

STAGES = (
    "classifier_train",
    "maps_extract",
    "refiner_train",
    "deeplabv3plus_train",
    "deeplabv3plus_eval",
    "deeplabv2_train",
    "deeplabv2_eval",
    "crf",
)
EVALUATIONS = ("deeplabv3plus_eval", "deeplabv2_eval")  # each followed by the CRF of its val images
# PASCAL VOC 2012's image counts (no config file holds them): train_aug is SBD's SegmentationClassAug
# ids minus val (config/voc2012.yaml's header, the paper), val is ImageSets/Segmentation/val.txt
VOC_TRAIN_AUG = 10_582
VOC_VAL = 1_449
INPUT_BOUND = 0.10  # a stage blocked on its input for more than this share of its time is input-bound
VOC_CONFIG = Path(__file__).resolve().parents[2] / "config" / "voc2012.yaml"
FULL_IMAGE, TINY_IMAGE = (500, 375), (160, 120)  # W x H of the synthetic images
EVAL_IMAGES_PER_STEP = 4  # evaluation predicts one image at a time: 4 x --steps images are timed
MIB = 1 << 20


@dataclass
class RunSettings:
    """The settings of every stage: the VOC run's (:func:`reference_settings`) or ``--tiny``'s."""

    classifier: ClassifierSettings
    refiner: RefinerSettings
    maps: MapsSettings
    segmenter: SegmenterSettings
    deeplabv2: DeepLabV2Settings
    evaluation: EvaluationSettings
    source: str


def reference_settings(config: str | Path = VOC_CONFIG) -> RunSettings:
    """The VOC run's settings: the schema's defaults under ``config``'s sections (checked as a stage
    checks its own), with no pretrained weights (nothing to download; the speed is the same)."""
    path = Path(config)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read the VOC config ({err})") from None

    def of(cls):
        return cls.from_dict(values.get(cls.section) or {})

    return RunSettings(
        classifier=replace(of(ClassifierSettings), pretrained="none"),
        refiner=replace(of(RefinerSettings), pretrained="none"),
        maps=of(MapsSettings),
        segmenter=replace(of(SegmenterSettings), pretrained="none"),
        deeplabv2=replace(of(DeepLabV2Settings), pretrained="none"),
        evaluation=of(EvaluationSettings),
        source=f"workflow/schemas/config.schema.yaml defaults under {_shown(path)}",
    )


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(VOC_CONFIG.parents[1]))
    except ValueError:
        return str(path)


def tiny_settings(ref: RunSettings) -> RunSettings:
    """``--tiny``: the same networks at 1/16 width on 64-65 px crops, batches of 2 (a CPU smoke run)."""
    vgg = dict(width=1 / 16, input_size=72, crop_size=64, batch_size=2)
    return RunSettings(
        classifier=replace(ref.classifier, **vgg),
        refiner=replace(ref.refiner, **vgg),
        maps=replace(ref.maps, scales=[48, 64], batch_size=2),
        segmenter=replace(ref.segmenter, width=1 / 16, crop_size=65, batch_size=2),
        deeplabv2=replace(ref.deeplabv2, width=1 / 16, crop_size=65, batch_size=2),
        evaluation=replace(ref.evaluation, crop_size=65),
        source=ref.source + ", scaled down by --tiny",
    )


# -- timing ------------------------------------------------------------------------------------------
class _Clock:
    """Seconds spent waiting for input, added up."""

    def __init__(self):
        self.seconds = 0.0


class _Waited:
    """An iterator over ``batches`` that adds the time blocked on each next batch to ``clock``."""

    def __init__(self, batches, clock: _Clock):
        self._batches, self.clock = iter(batches), clock

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self._batches)
        finally:
            self.clock.seconds += time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fresh_memory(device: torch.device) -> None:
    """Free what the last stage left and restart the peak-memory count."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _timed(step: Callable[[], None], device, steps: int, warmup: int, clock: _Clock) -> dict:
    """``warmup`` untimed calls of ``step``, then ``steps`` timed ones between two synchronisations."""
    for _ in range(warmup):
        step()
    _sync(device)
    start, waited = time.perf_counter(), clock.seconds
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    share = (clock.seconds - waited) / seconds
    return {
        "seconds": seconds,
        "seconds_per_step": seconds / steps,
        "input_wait_share": share,
        "bound": "input-bound" if share > INPUT_BOUND else ("GPU-bound" if device.type == "cuda" else "CPU-bound"),
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None,
    }


# -- the stages ----------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What every stage takes: the device, AMP dtype, step counts, settings and the synthetic set."""

    device: torch.device
    amp: torch.dtype | None
    steps: int
    warmup: int
    settings: RunSettings
    dataset: Path

    @property
    def voc(self) -> VOCDataset:
        return VOCDataset(self.dataset, "train")


def _train(run: _Run, what: str, net, optimizer, loss, data, settings, accumulation: int = 1) -> dict:
    """Training steps as the loop makes them (:func:`drs.training.loop.fit`): ``accumulation`` loader
    batches a step, each under autocast, its loss reduced by the loop's ``_batch_loss`` and scaled
    by a GradScaler (enabled for float16 only), then the optimizer step."""
    device, amp = run.device, run.amp
    batches = (run.warmup + run.steps) * accumulation
    data = Subset(data, [i % len(data) for i in range(batches * settings.batch_size)])
    clock = _Clock()
    loader = data_loader(data, settings)  # the trainers' loader: workers, pinned memory on CUDA
    inputs = _Waited(loader, clock)
    net.to(device).train()
    opt = optimizer(net)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    losses = []

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for _ in range(accumulation):
            batch = next(inputs)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = loss(net, batch, device)
            scaled, mean = _batch_loss(out, distributed=False)
            scaler.scale(scaled if accumulation == 1 else scaled / accumulation).backward()
            losses.append(mean.detach())  # checked once at the end: no host synchronisation per step
        scaler.step(opt)
        scaler.update()

    result = _timed(step, device, run.steps, run.warmup, clock)
    images = run.steps * accumulation * settings.batch_size
    return {
        "what": what,
        "batch_size": settings.batch_size,
        "accumulation": accumulation,
        "crop": settings.crop_size,
        "steps": run.steps,
        "warmup": run.warmup,
        "images": images,
        "images_per_s": images / result["seconds"],
        **result,
        "loss_finite": bool(torch.stack(losses).isfinite().all()),
    }


def classifier_train(run: _Run) -> dict:
    s = run.settings.classifier
    voc = run.voc
    data = ClassificationSet(voc, classification_transform(s.input_size, s.crop_size))
    net = build_classifier(voc.num_classes, s, drs="learnable", delta=None)
    what = f"VGG-16 DRS (learnable), width {s.width:g}, crop {s.crop_size} of {s.input_size}"
    return _train(run, what, net, lambda m: classifier_optimizer(m, s), classifier_loss, data, s)


def refiner_train(run: _Run) -> dict:
    s = run.settings.refiner
    voc = run.voc
    store = synthetic_store(run.dataset, run.dataset.parent / f"{run.dataset.name}-maps2.h5")
    data = RefineSet(voc, store, s.input_size, s.crop_size, s.random_crop)
    net = build_refiner(voc.num_classes, s)
    what = f"VGG-16 refiner, width {s.width:g}, {'crop' if s.random_crop else 'resized to'} {s.crop_size}"
    return _train(run, what, net, lambda m: refiner_optimizer(m, s), refiner_loss, data, s)


def deeplabv3plus_train(run: _Run) -> dict:
    s = run.settings.segmenter
    data = SegmentationSet(run.voc, None, s)
    net = build_segmenter(len(run.voc.class_names), s)
    what = f"DeepLabV3+ {s.backbone}, width {s.width:g}, OS {s.output_stride}, crop {s.crop_size}"
    return _train(run, what, net, lambda m: segmenter_optimizer(m, s), segmenter_loss, data, s)


def _deeplabv2_net(run: _Run):
    s = run.settings.deeplabv2
    return deeplabv2(len(run.voc.class_names), s.backbone, s.width, s.atrous_rates, s.msc_scales)


def deeplabv2_train(run: _Run) -> dict:
    s = run.settings.deeplabv2
    data = DeepLabV2Set(run.voc, None, s)
    what = f"DeepLab-V2 {s.backbone} MSC, width {s.width:g}, crop {s.crop_size}"
    return _train(
        run, what, _deeplabv2_net(run), lambda m: deeplabv2_optimizer(m, s), deeplabv2_loss, data, s, s.accumulation
    )


def maps_extract(run: _Run) -> dict:
    """Extraction as ``drs extract-maps`` makes it: its loader (decoding workers, pinned memory),
    every scale (and flip), the maps built on the device and handed to a map store whose threads
    deflate them; a step is one batch."""
    s, device = run.settings.maps, run.device
    root = run.dataset
    voc = VOCDataset(root, repeated_split(root, (run.warmup + run.steps) * s.batch_size))  # distinct ids
    net = build_classifier(voc.num_classes, run.settings.classifier, drs="learnable", delta=None)
    net.to(device).eval()
    workers = default_workers()
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        options = dict(class_names=list(voc.class_names), scales=s.scales, flip=s.flip, stage="cam")
        with MapStoreWriter(
            Path(tmp) / "maps.h5", **options, split=voc.split, dataset=str(root), compress_workers=workers
        ) as writer:
            inputs = _Waited(decoded_batches(voc, voc.ids, s, device, workers), clock)
            maps = maps_of_batches(net, inputs, s, device)

            def step() -> None:
                for _ in range(s.batch_size):
                    writer.add(*next(maps))

            result = _timed(step, device, run.steps, run.warmup, clock)
            maps.close()
    images = run.steps * s.batch_size
    return {
        "what": f"VGG-16 DRS maps at scales {list(s.scales)}{' + flip' if s.flip else ''}, into a map store",
        "batch_size": s.batch_size,
        "accumulation": 1,
        "crop": None,
        "steps": run.steps,
        "warmup": run.warmup,
        "images": images,
        "images_per_s": images / result["seconds"],
        **result,
        "loader_workers": workers,
    }


def _evaluate(run: _Run, what: str, net, crop: int | None) -> dict:
    """Predictions as ``drs evaluate`` makes them: one image at a time, decoded (and, for DeepLabV3+,
    given the reference's crop) in the main thread, softmax scores through its Predictor, the
    arg-max added to the confusion matrix and written as a PNG (the CRF apart: stage ``crf``)."""
    device, voc = run.device, run.voc
    predictor = Predictor.of_model(net, {"class_names": list(voc.class_names)}, device)
    score = SegmentationScore(len(voc.class_names))
    clock = _Clock()
    count = [0]
    with tempfile.TemporaryDirectory() as tmp:

        def step() -> None:
            image_id = voc.ids[count[0] % len(voc)]
            count[0] += 1
            start = time.perf_counter()
            image, mask = voc.load_image(image_id), voc.load_mask(image_id)
            if crop is not None:
                image, mask = reference_crop(image, mask, crop)
            clock.seconds += time.perf_counter() - start
            prediction = predictor.scores(image).argmax(0).astype(np.uint8)
            score.add(prediction, mask)
            save_label_png(Path(tmp) / f"{count[0]}.png", prediction)

        images = EVAL_IMAGES_PER_STEP * run.steps
        result = _timed(step, device, images, run.warmup, clock)
    return {
        "what": what,
        "batch_size": 1,
        "accumulation": 1,
        "crop": crop,
        "steps": images,
        "warmup": run.warmup,
        "images": images,
        "images_per_s": images / result["seconds"],
        **result,
    }


def deeplabv3plus_eval(run: _Run) -> dict:
    s, e = run.settings.segmenter, run.settings.evaluation
    crop = e.crop_size if e.protocol == "reference" else None
    where = f"{crop}x{crop} reference crop" if crop else "whole images"
    net = build_segmenter(len(run.voc.class_names), s)
    return _evaluate(run, f"DeepLabV3+ {s.backbone} predictions, {where}, one scale", net, crop)


def deeplabv2_eval(run: _Run) -> dict:
    s = run.settings.deeplabv2
    what = f"DeepLab-V2 {s.backbone} predictions, whole images, MSC maximum (main.py test)"
    return _evaluate(run, what, _deeplabv2_net(run), None)


def crf(run: _Run, tiny: bool) -> dict:
    """The dense CRF on a pool of every usable core (:func:`drs.bench.crf.bench_crf`), at VOC size."""
    try:
        import pydensecrf.densecrf  # noqa: F401 - only whether it is there
    except ImportError as err:
        return {"what": "dense CRF", "skipped": f"pydensecrf is not installed ({err}): the CRF was not measured"}
    width, height = TINY_IMAGE if tiny else FULL_IMAGE
    images = 2 if tiny else 8
    r = bench_crf(images, height, width, 21)
    return {
        "what": f"dense CRF, {width}x{height}, 21 classes, {r['params']['iterations']} iterations, {r['workers']} "
        "processes (CPU)",
        "batch_size": None,
        "accumulation": 1,
        "crop": None,
        "steps": images,
        "warmup": 1,
        "images": images,
        "images_per_s": r["parallel_images_per_s"],
        "seconds": images / r["parallel_images_per_s"],
        "seconds_per_step": 1 / r["parallel_images_per_s"],
        "input_wait_share": None,
        "bound": f"CPU ({r['workers']} processes)",
        "peak_memory_mb": None,
        "single_process_images_per_s": r["single_images_per_s"],
        "workers": r["workers"],
    }


_GPU_STAGES = {
    "classifier_train": classifier_train,
    "maps_extract": maps_extract,
    "refiner_train": refiner_train,
    "deeplabv3plus_train": deeplabv3plus_train,
    "deeplabv3plus_eval": deeplabv3plus_eval,
    "deeplabv2_train": deeplabv2_train,
    "deeplabv2_eval": deeplabv2_eval,
}


# -- the projection ---------------------------------------------------------------------------------
def _work(ref: RunSettings) -> dict[str, tuple[str, int, str]]:
    """Each stage's work in the full VOC run: (unit, count, what), from the reference's settings."""
    c, r, seg, v2 = ref.classifier, ref.refiner, ref.segmenter, ref.deeplabv2

    def epoch_images(s) -> int:  # the training loader drops the last partial batch
        return VOC_TRAIN_AUG // s.batch_size * s.batch_size

    seg_steps = seg.schedule(VOC_TRAIN_AUG // seg.batch_size)[1]
    v2_steps = v2.schedule(VOC_TRAIN_AUG // v2.batch_size // v2.accumulation)[1]
    return {
        "classifier_train": ("images", c.epochs * epoch_images(c), f"{c.epochs} epochs x {epoch_images(c)} images"),
        "maps_extract": ("images", 2 * VOC_TRAIN_AUG, "train_aug twice: the classifier's maps and the refiner's"),
        "refiner_train": ("images", r.epochs * epoch_images(r), f"{r.epochs} epochs x {epoch_images(r)} images"),
        "deeplabv3plus_train": ("steps", seg_steps, f"{seg_steps} iterations of batch {seg.batch_size}"),
        "deeplabv3plus_eval": ("images", VOC_VAL, "val"),
        "deeplabv2_train": ("steps", v2_steps, f"{v2_steps} iterations of {v2.accumulation} x {v2.batch_size} images"),
        "deeplabv2_eval": ("images", VOC_VAL, "val"),
        "crf": ("images", 2 * VOC_VAL, "val after each segmenter (CPU; overlaps its evaluation)"),
    }


def projection(stages: dict, ref: RunSettings) -> dict:
    """Hours of each measured stage in the full VOC run (one DRS chain: classifier, its maps, refiner,
    refined maps, DeepLabV3+ and DeepLab-V2 each trained and evaluated on val), and the GPU-hours in
    all. An evaluation holds its GPU while the CRF of its images runs beside it on the CPU cores
    (``drs evaluate``'s pool), so it counts for the longer of the two."""
    out = {}
    for name, (unit, count, what) in _work(ref).items():
        r = stages.get(name)
        if not r or "images_per_s" not in r:
            continue
        seconds = count * r["seconds_per_step"] if unit == "steps" else count / r["images_per_s"]
        out[name] = {"unit": unit, "count": count, "work": what, "hours": seconds / 3600}
    crf_each = out["crf"]["hours"] / 2 if "crf" in out else 0.0
    total = sum(
        max(p["hours"], crf_each) if name in EVALUATIONS else p["hours"] for name, p in out.items() if name != "crf"
    )
    return {
        "stages": out,
        "gpu_hours_total": total,
        "not_measured": [s for s in STAGES if s not in out],
        "counts": {"train_aug": VOC_TRAIN_AUG, "val": VOC_VAL},
        "settings": ref.source,
        "note": "one DRS chain with both segmenters; the workflow's `all` adds the fully supervised segmenter and "
        "the CAM baseline's classifier and maps",
    }


# -- the run ------------------------------------------------------------------------------------------
def pick(device: str | None) -> torch.device:
    """``--device``: cuda (an error without a GPU) or cpu; default cuda where there is one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: this machine has no CUDA device that torch can use")
    return torch.device(device)


def bench_gpu(
    stages=STAGES,
    steps: int | None = None,
    warmup: int | None = None,
    device: str | None = None,
    amp: str = "auto",
    tiny: bool = False,
    cache: str | Path = "results/bench",
    config: str | Path = VOC_CONFIG,
) -> dict:
    """Run ``stages`` (names of :data:`STAGES`) and return the result with its projection. ``steps``
    timed steps per stage (default 15; ``tiny`` 2) after ``warmup`` (default min(3, steps); ``tiny`` 1).
    ``tiny`` on the CPU runs torch on one thread: on a shared machine, OpenMP threads contending
    for busy cores made the smoke run ten times slower."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"unknown stage(s) {unknown}: expected some of {list(STAGES)}")
    where = pick(device)
    ref = reference_settings(config)
    settings = tiny_settings(ref) if tiny else ref
    steps = steps or (2 if tiny else 15)
    if warmup is None:
        warmup = 1 if tiny else min(3, steps)
    if tiny and where.type == "cpu":
        torch.set_num_threads(1)
    dtype = amp_dtype(where, amp)
    dataset = voc_sized_set(cache, 8 if tiny else 100, size=TINY_IMAGE if tiny else FULL_IMAGE)
    run = _Run(where, dtype, steps, warmup, settings, dataset)
    torch.manual_seed(0)
    results = {}
    for name in (s for s in STAGES if s in stages):
        _fresh_memory(where)
        if name == "crf":
            results[name] = crf(run, tiny)
            continue
        try:
            results[name] = _GPU_STAGES[name](run)
        except torch.cuda.OutOfMemoryError as err:
            results[name] = {"what": name, "error": f"out of GPU memory: {str(err).splitlines()[0]}"}
    _fresh_memory(where)
    info = _machine(where)
    return {
        "benchmark": "gpu",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "tiny": tiny,
        "device": str(where),
        "device_name": info.get("gpu") or machine()["cpu_model"],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "amp": str(dtype).removeprefix("torch.") if dtype is not None else "off (fp32)",
        "steps": steps,
        "warmup": warmup,
        "input_bound_above": INPUT_BOUND,
        "images": f"{dataset.name} (synthetic, {'x'.join(map(str, TINY_IMAGE if tiny else FULL_IMAGE))} px)",
        "stages": results,
        "projection": projection(results, ref),
        "machine": {**machine(), **info},
    }


def _number(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_markdown(r: dict) -> str:
    """The result as a markdown table, a projected total and the run's conditions."""
    p = r["projection"]["stages"]
    lines = [
        f"`drs bench gpu` on {r['device_name']} ({r['device']}), torch {r['torch']}, AMP {r['amp']}, {r['date']}"
        + (" — `--tiny`: a smoke run, not a performance figure" if r["tiny"] else ""),
        "",
        "| stage | setting | img/s | s/step | peak GPU MiB | input wait | bound | VOC run | projected h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in r["stages"].items():
        if "skipped" in s or "error" in s:
            lines.append(f"| {name} | {s['what']} | {s.get('skipped') or s['error']} | | | | | | |")
            continue
        batch = "" if s["batch_size"] is None else f", batch {s['batch_size']}"
        batch += f" x {s['accumulation']} a step" if s["accumulation"] > 1 else ""
        share = s["input_wait_share"]
        wait = "-" if share is None else f"{100 * share:.1f}%"
        work, hours = (p[name]["work"], f"{p[name]['hours']:.2f}") if name in p else ("", "-")
        lines.append(
            f"| {name} | {s['what']}{batch} | {s['images_per_s']:.2f} | {s['seconds_per_step']:.3f} | "
            f"{_number(s['peak_memory_mb'], '.0f')} | {wait} | {s['bound']} | {work} | {hours} |"
        )
    proj = r["projection"]
    lines += [
        "",
        f"Projected total: {proj['gpu_hours_total']:.2f} GPU-hours ({proj['note']}; each evaluation counted for "
        "the longer of itself and its CRF)"
        + (f"; not measured: {', '.join(proj['not_measured'])}" if proj["not_measured"] else "")
        + ".",
        f"Timed: {r['steps']} steps per stage after {r['warmup']} untimed warm-up step(s) (evaluation: "
        f"{EVAL_IMAGES_PER_STEP} x {r['steps']} images); input-bound above {100 * r['input_bound_above']:.0f}% "
        f"of the time waiting for input. Settings: {proj['settings']}.",
    ]
    return "\n".join(lines) + "\n"
