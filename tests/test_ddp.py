"""Multi-process runs under torchrun (DistributedDataParallel, gloo on the CPU) against one process.

Equality with one process is checked on the CAM classifier (``drs: none``) with the test config's
batch norm, synchronised across the processes (drs.distributed.CpuSyncBatchNorm, as torch's
SyncBatchNorm needs CUDA): without the synchronisation each process would normalise by its own
half batch, which no single process does. The learnable DRS module is not used for that comparison:
its min(x, c * max x) follows whichever activation is largest, so a rounding-level change
(1e-7) flips some choices and moves the weights by about 1e-4 after a few steps. Even one process
that splits its batch of 4 into two forward passes of 2 (the same arithmetic as two processes,
which it matches bit for bit) ends that far from the one that does not. DRS runs are therefore
compared with DRS runs under the same process count: an interrupted and resumed two-process run
must end bit for bit where an uninterrupted one ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from drs.config.settings import ClassifierSettings, MapsSettings
from drs.config.workflow import check_config, ddp_nproc
from drs.errors import UserError
from drs.inference.maps import extract_maps
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from drs.training.classifier import train_classifier
from helpers import BIN, REPO, TINY_CONFIG, snakemake

SETTINGS = dict(
    width=0.125,
    batch_norm=True,
    extra_batch_norm=True,
    stages=3,
    pretrained="none",
    epochs=2,
    batch_size=4,
    lr=0.01,
    lr_decay_epochs=[2],
    input_size=48,
    crop_size=40,
    log_every=1,
)
# The CAM run of the equality test: one epoch at the paper's learning rate (at 10x, 1e-7 rounding
# differences grow to 2e-5 in two steps of training from scratch).
CAM = {**SETTINGS, "epochs": 1, "lr": 0.001}
# DDP vs one process after that epoch: measured 6e-8 here; without synchronised batch norm, 2.6e-3
ATOL = 1e-5

# A loss averaged over a number of elements that varies between images (pixels not ignored, as
# DeepLabV3+'s): step_loss returns (sum, count), which fit divides by the count over all processes.
TOY = """
import torch
import torch.nn.functional as F
from torch import nn


class ToySet(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(8, 3, 12, 12, generator=g)
        self.masks = torch.randint(0, 3, (8, 12, 12), generator=g)
        for i in range(8):
            self.masks[i, : 2 * i] = 255  # image i ignores its first 2i rows

    def __len__(self):
        return 8

    def __getitem__(self, i):
        flip = bool(torch.rand(()) < 0.5)  # an augmentation drawn from the global generator
        return (self.images[i].flip(-1), self.masks[i].flip(-1)) if flip else (self.images[i], self.masks[i])


def toy_fit(out, accumulation=1, **options):
    from drs.config.settings import LoopSettings
    from drs.training.loop import fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        ToySet(), batch_size=4, shuffle=True, drop_last=True, generator=torch.Generator()
    )

    def step_loss(model, batch, device):
        images, masks = batch
        return F.cross_entropy(model(images), masks, ignore_index=255, reduction="sum"), (masks != 255).sum()

    settings = LoopSettings(epochs=2, seed=0, accumulation=accumulation)
    return fit(model, optimizer, loader, step_loss, settings, out, **options)
"""

# Run by torchrun (one start-up for several runs): (a) CAM; (b) DRS, two epochs, then its maps
# (batches of 3: 6 images for rank 0, 2 for rank 1); (c) DRS, interrupted after 3 steps (mid epoch 2:
# 8 images in batches of 4 make 2 steps an epoch).
WORKER = (
    TOY
    + """
import json, sys
from drs.runtime import distributed
from drs.config.settings import ClassifierSettings, MapsSettings
from drs.training.classifier import train_classifier
from drs.inference.maps import extract_maps

dataset, out, settings, cam = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
train_classifier(dataset, "train", out + "/cam", ClassifierSettings.from_dict(cam), "none")
model = train_classifier(dataset, "train", out + "/drs", ClassifierSettings.from_dict(settings), "learnable")
extract_maps(model, dataset, "train", out + "/maps/sharded.h5", MapsSettings(scales=[40, 48], flip=True, batch_size=3))
try:
    resumed = ClassifierSettings.from_dict(settings)
    train_classifier(dataset, "train", out + "/resumed", resumed, "learnable", stop_after_steps=3)
except KeyboardInterrupt:
    print(f"rank {distributed.rank()} interrupted", flush=True)
toy_fit(out + "/toy")
toy_fit(out + "/toy_accumulated", accumulation=2)  # gradients all-reduced once a step (no_sync before)
distributed.cleanup()
"""
)


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` (a free port) with one thread per process, this checkout importable."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={nproc}", *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return result


def state(path: Path) -> dict:
    checkpoint = torch.load(path, weights_only=True)
    return checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint["model"]


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread in this process, as in each torchrun process (OMP_NUM_THREADS=1): the same
    arithmetic for the one-process references (bit for bit for map extraction)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


@pytest.fixture(scope="module")
def ddp_runs(dataset, tmp_path_factory):
    """The two-process trainings of WORKER, then the interrupted one resumed by the command line."""
    out = tmp_path_factory.mktemp("ddp")
    (out / "worker.py").write_text(WORKER)
    (out / "maps").mkdir()
    (out / "maps" / ".sharded.h5.part1-of-3").write_text("a part of an earlier, killed extraction")
    first = torchrun(str(out / "worker.py"), str(dataset), str(out), json.dumps(SETTINGS), json.dumps(CAM), cwd=out)
    assert "rank 0 interrupted" in first.stdout and "rank 1 interrupted" in first.stdout
    assert torch.load(out / "resumed" / "last.pt", weights_only=True)["epoch"] == 1
    assert not (out / "resumed" / "model.pt").exists()
    resume = torchrun(
        "-m",
        "drs",
        "train-classifier",
        "--dataset",
        str(dataset),
        "--out",
        str(out / "resumed"),
        "--drs",
        "learnable",
        "--settings",
        json.dumps(SETTINGS),
        cwd=out,
    )
    return out, resume.stdout + resume.stderr


@pytest.mark.slow
def test_two_processes_match_one_process_after_an_epoch(dataset, ddp_runs, tmp_path):
    out, _ = ddp_runs
    single = train_classifier(
        dataset, "train", tmp_path / "single", ClassifierSettings.from_dict(CAM), "none", nproc_invariant=True
    )
    a, b = state(single), state(out / "cam" / "model.pt")
    diff = max_abs_diff(a, b)
    print(f"max abs diff, 2 processes vs 1 after one epoch: {diff:.2e}")
    assert diff <= ATOL
    assert all(torch.equal(a[k], b[k]) for k in a if k.endswith("num_batches_tracked"))


@pytest.mark.slow
def test_masked_loss_as_sum_and_count_matches_one_process(ddp_runs, tmp_path):
    out, _ = ddp_runs
    namespace = {}
    exec(TOY, namespace)
    model = namespace["toy_fit"](tmp_path, nproc_invariant=True)
    diff = max_abs_diff(model.state_dict(), state(out / "toy" / "last.pt"))
    print(f"max abs diff, masked loss, 2 processes vs 1 after two epochs: {diff:.2e}")
    assert diff <= ATOL
    accumulated = namespace["toy_fit"](tmp_path / "accumulated", accumulation=2, nproc_invariant=True)
    diff = max_abs_diff(accumulated.state_dict(), state(out / "toy_accumulated" / "last.pt"))
    print(f"max abs diff, 2 accumulation steps, 2 processes vs 1: {diff:.2e}")
    assert diff <= ATOL


@pytest.mark.slow
def test_resume_under_ddp_ends_where_an_uninterrupted_run_ends(ddp_runs):
    out, log = ddp_runs
    assert "resuming from" in log and "after epoch 1 of 2" in log
    assert log.count("epoch 2/2 done") == 1  # rank 0 alone logs
    a, b = state(out / "drs" / "model.pt"), state(out / "resumed" / "model.pt")
    assert max_abs_diff(a, b) == 0.0


@pytest.mark.slow
def test_sharded_extraction_gives_the_one_process_store(dataset, ddp_runs, tmp_path):
    out, _ = ddp_runs
    sharded = out / "maps" / "sharded.h5"
    assert [p.name for p in sharded.parent.iterdir()] == ["sharded.h5"]  # parts (and a stale one) removed
    model = out / "drs" / "model.pt"
    single = extract_maps(
        model, dataset, "train", tmp_path / "single.h5", MapsSettings(scales=[40, 48], flip=True, batch_size=3)
    )
    with MapStore(single) as a, MapStore(sharded) as b:
        assert a.ids == b.ids and len(a) == 8
        for ra, rb in zip(a, b):
            assert ra.classes.tolist() == rb.classes.tolist() and ra.size == rb.size
            np.testing.assert_array_equal(ra.maps, rb.maps)
        attrs_a, attrs_b = a.attrs, b.attrs
        assert {k for k in attrs_a if attrs_a[k] != attrs_b.get(k)} <= {"created"}


# -- pieces, in one process ------------------------------------------------------------------------
def test_shard_loader_splits_each_global_batch_across_processes(dataset):
    from drs.data.datasets import ClassificationSet
    from drs.data.transforms import classification_transform
    from drs.data.voc import VOCDataset
    from drs.runtime.distributed import shard_loader
    from drs.training.scaffold import data_loader

    settings = ClassifierSettings.from_dict(SETTINGS)
    data = ClassificationSet(VOCDataset(dataset, "train"), classification_transform(48, 40))
    loader = data_loader(data, settings)

    def batches(num, index):
        part = shard_loader(loader, seed=7, num=num, index=index)
        part.sampler.set_epoch(3)
        part.dataset.epoch_seed = 11
        return list(part)

    whole = batches(1, 0)
    halves = [batches(2, r) for r in range(2)]
    assert len(whole) == len(halves[0]) == len(halves[1]) == 2
    for step, (images, targets) in enumerate(whole):
        # process r holds positions r, r + 2, ... of the one-process batch, with the same augmentation
        torch.testing.assert_close(images[0::2], halves[0][step][0], rtol=0, atol=0)
        torch.testing.assert_close(images[1::2], halves[1][step][0], rtol=0, atol=0)
        torch.testing.assert_close(targets[1::2], halves[1][step][1], rtol=0, atol=0)
    # nor do data-loading workers change what an image gets
    loader = data_loader(data, ClassifierSettings.from_dict({**SETTINGS, "num_workers": 2}))
    for (images, _), (again, _) in zip(whole, batches(1, 0)):
        torch.testing.assert_close(images, again, rtol=0, atol=0)
    with pytest.raises(UserError, match="batch size 4 cannot be split evenly across 3 processes"):
        shard_loader(loader, seed=7, num=3, index=0)


def test_sync_batchnorm_conversion_shares_parameters_and_is_undone():
    from torch import nn

    from drs.runtime.distributed import convert_sync_batchnorm

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    weight, bn = model[1].weight, model[1]
    restore = convert_sync_batchnorm(model)
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert model[1].weight is weight and model[1].running_mean is bn.running_mean
    model(torch.randn(2, 3, 8, 8))  # one process: plain batch norm
    restore()
    assert model[1] is bn and type(model[2][0]) is nn.BatchNorm2d and int(bn.num_batches_tracked) == 1


def test_store_parts_merge_in_order(tmp_path):
    options = dict(
        class_names=["background", "a", "b"], scales=[8], flip=False, stage="cam", split="train", dataset="d"
    )
    maps = {f"i{n}": np.full((1, 4, 5), n, dtype=np.uint8) for n in range(5)}
    for part, ids in (("p0.h5", ["i0", "i1", "i2"]), ("p1.h5", ["i3", "i4"])):
        with MapStoreWriter(tmp_path / part, **options) as writer:
            for i in ids:
                writer.add(i, [1], maps[i])
    with MapStoreWriter(tmp_path / "all.h5", **options) as writer:
        for part in ("p0.h5", "p1.h5"):
            with MapStore(tmp_path / part) as store:
                writer.add_store(store)
        with MapStore(tmp_path / "p1.h5") as store, pytest.raises(UserError, match="duplicate id"):
            writer.add_store(store)
    with MapStore(tmp_path / "all.h5") as store:
        assert store.ids == list(maps)
        for i, m in maps.items():
            np.testing.assert_array_equal(store.read(i).maps, m)


@pytest.mark.slow
def test_config_process_counts_and_launcher(tmp_path):
    import yaml

    config = yaml.safe_load(TINY_CONFIG.read_text())
    assert ddp_nproc(config, "train_classifier") == 1
    config["ddp"] = {"nproc": 2, "rules": {"extract_maps": 3}}
    assert ddp_nproc(config, "train_classifier") == 2 and ddp_nproc(config, "extract_maps") == 3
    check_config(config)  # batch 4 splits over 2
    config["ddp"]["nproc"] = 3
    with pytest.raises(UserError, match=r"'ddp.nproc': 3 processes cannot share classifier.batch_size 4"):
        check_config(config)
    config["ddp"] = {"nproc": 2, "rules": {"extract_maps": 3}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "-n", "-p", "--configfile", str(path), "--cores", "4")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    share = r"OMP_NUM_THREADS=(\d+) MKL_NUM_THREADS=\1 "  # each process, its share of the job's threads
    assert re.search(share + "torchrun --standalone --nproc_per_node=2 -m drs train-classifier", out)
    assert "torchrun --standalone --nproc_per_node=3 -m drs extract-maps" in out
    assert "torchrun --standalone --nproc_per_node=2 -m drs train-refiner" in out
