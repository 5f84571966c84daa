"""The refiner's dataset keeps resident memory flat in the number of items it has read.

RefineSet reads every item's maps from the HDF5 store between the item's large buffers (image,
dense maps, transforms); without handing the heap's free pages back (drs.malloc) glibc's heap grew
by about 0.7 MB per 500 x 375 item (2,000 items: +400 MB in each loader worker). The items are
read in a fresh process: pytest's own heap would blur the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drs.bench.voc_set import repeated_split, synthetic_store, voc_sized_set
from helpers import memory_growth_mb

FIRST, LAST = 50, 200  # resident memory is compared after these many items
MAX_GROWTH_PER_ITEM_MB = 0.2  # without the trim: 0.67; with it 0.00-0.08 (one full-suite run)

PROBE = """
import json, sys
import torch
from drs.data.datasets import RefineSet
from drs.data.voc import VOCDataset

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

torch.set_num_threads(1)
dataset, split, store = sys.argv[1:4]
data = RefineSet(VOCDataset(dataset, split), store, 128, 112)
seen = {}
for i in range(len(data)):
    data[i]
    if i + 1 in (FIRST, LAST):
        seen[i + 1] = rss_mb()
print(json.dumps(seen))
""".replace("FIRST", str(FIRST)).replace("LAST", str(LAST))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_refine_set_memory_is_flat_in_the_number_of_items(tmp_path):
    data = voc_sized_set(tmp_path, images=8, size=(500, 375))
    split = repeated_split(data, LAST)  # hard links of the 8 images under new ids
    store = synthetic_store(data, tmp_path / "maps.h5", split, classes_per_image=2)
    growth, said = memory_growth_mb(PROBE, [str(data), split, str(store)], FIRST, LAST, "item")
    assert growth < MAX_GROWTH_PER_ITEM_MB, said
