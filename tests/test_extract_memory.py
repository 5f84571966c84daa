"""`drs extract-maps` keeps resident memory flat in the number of images.

Extraction interleaves large short-lived buffers (images, tensors, maps) with the store's small
long-lived HDF5 blocks; without handing the heap's free pages back (drs.malloc) glibc's heap grew
by about 0.3 MB per 256 x 256 image here (1.6 MB per 448 x 448 image), so VOC's 10,582 images
needed ~17 GB. The run is measured in a fresh process: pytest's own heap would blur the figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drs.config.settings import ClassifierSettings
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.voc import IMAGE_DIR, SPLIT_DIR
from drs.training.classifier import train_classifier
from helpers import memory_growth_mb

FIRST, LAST = 50, 250  # resident memory is compared after these many images
MAX_GROWTH_PER_IMAGE_MB = 0.1  # the store's own metadata is ~0.01 MB per image

# The store writer's add() reports the resident memory after the FIRST-th and the LAST-th image.
PROBE = """
import json, sys
import drs.store.writer as maps
from drs.config.settings import MapsSettings
from drs.inference.maps import extract_maps

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

seen = {}
add = maps.MapStoreWriter.add
def counting_add(self, *args):
    add(self, *args)
    if len(self) in (FIRST, LAST):
        seen[len(self)] = rss_mb()
maps.MapStoreWriter.add = counting_add
checkpoint, dataset, out = sys.argv[1:4]
extract_maps(checkpoint, dataset, "many", out, MapsSettings(scales=[128], batch_size=8))
print(json.dumps(seen))
""".replace("FIRST", str(FIRST)).replace("LAST", str(LAST))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_extraction_memory_is_flat_in_the_number_of_images(tmp_path):
    spec = SynthSpec(num_train=8, num_val=1, image_size=256, num_classes=3, clutter=2)
    data = generate(tmp_path / "synthetic", spec, workers=1)
    settings = dict(width=0.125, stages=3, pretrained="none", epochs=1, batch_size=4, input_size=32, crop_size=32)
    checkpoint = train_classifier(
        data, "train", tmp_path / "classifier", ClassifierSettings.from_dict(settings), "learnable"
    )
    # LAST images: hard links of the 8 training images (and masks) under new ids
    base = (data / SPLIT_DIR / "train.txt").read_text().split()
    masks = next(d for d in ("SegmentationClassAug", "SegmentationClass") if (data / d).is_dir())
    ids = [f"copy_{n:04d}" for n in range(LAST)]
    for n, image_id in enumerate(ids):
        source = base[n % len(base)]
        os.link(data / IMAGE_DIR / f"{source}.jpg", data / IMAGE_DIR / f"{image_id}.jpg")
        os.link(data / masks / f"{source}.png", data / masks / f"{image_id}.png")
    (data / SPLIT_DIR / "many.txt").write_text("\n".join(ids) + "\n")

    growth, said = memory_growth_mb(
        PROBE, [str(checkpoint), str(data), str(tmp_path / "maps.h5")], FIRST, LAST, "image"
    )
    assert growth < MAX_GROWTH_PER_IMAGE_MB, said
