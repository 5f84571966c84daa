"""`drs bench maps`: map extraction against the bare forward pass, and the map store.

- extraction throughput (images/s, end to end: decode, resize, forward, upsample, normalise,
  compress, write) against the bare batched forward pass at the same scales on the same images,
  as a ratio (noisy machines make ratios more telling than absolute figures);
- bytes per image in the store against the reference code's per-image ``.npy`` of all classes at
  uint8 (C x H x W bytes; also given for VOC's 20 classes);
- time to read one image's maps (random access, median and 95th percentile).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from drs.bench.machine import _machine
from drs.config.settings import MapsSettings
from drs.data.transforms import to_normalized_tensor
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.inference.maps import extract_maps, forward_scales
from drs.runtime.device import pick_device
from drs.store.model_files import load_classifier
from drs.store.reader import MapStore

MAPS = MapsSettings()  # the maps section's defaults (the schema's)


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
            settings = MapsSettings(scales=list(scales), flip=flip, batch_size=batch_size)
            extract_maps(checkpoint, dataset, split, store, settings, limit=len(ids))
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
            f"store: {r['store_bytes_per_image'] / 1024:.1f} KiB/image = 1/{1 / r['store_to_dense_ratio']:.1f} of a "
            "dense "
            f"C x H x W uint8 array (1/{1 / r['store_to_dense_voc20_ratio']:.1f} at VOC's 20 classes)",
            f"read one image: median {r['read_ms_median']:.2f} ms, p95 {r['read_ms_p95']:.2f} ms",
            f"machine: {r['machine']['processor']}, {r['machine']['cpu_count']} cores, {r['machine']['device']}, "
            f"torch {r['machine']['torch']}",
        ]
    )
