"""Peak resident memory of a stage at two image counts, each run in a fresh process
(``drs bench loaders --memory``, ``drs bench labels --memory``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drs.bench.voc_set import repeated_split, synthetic_store
from drs.config.settings import RefinerSettings
from drs.errors import UserError
from drs.labels.scoring import score_labels
from drs.labels.writer import generate_pseudo_labels
from drs.training.refiner import train_refiner
from drs.util.files import usable_cores

_MEMORY_CHILD = """
import json, sys
from drs.bench.machine import _rss_peaks_mb
from drs.bench.memory import memory_child_run
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
        generate_pseudo_labels(store, out, dataset)
    elif what == "score-labels":
        score_labels(out, dataset, split)
    elif what == "train-refiner":
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
