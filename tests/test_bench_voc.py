"""The VOC-sized benchmarks: the set they make, the network stand-in, and the commands end to end
(tiny sizes: these test the benchmark's wiring, not the figures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drs.bench.pipeline import CachedNetwork
from drs.bench.voc_set import repeated_split, voc_sized_set
from drs.cli import main
from drs.data.voc import VOCDataset


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return voc_sized_set(tmp_path_factory.mktemp("cache"), images=6, size=(64, 48))


def test_set_is_cut_to_the_size_and_made_once(tiny_set):
    voc = VOCDataset(tiny_set, "train")
    assert len(voc) == 6 and voc.num_classes == 20
    for image_id in voc.ids:
        assert voc.load_image(image_id).shape == (48, 64, 3)
        assert voc.load_mask(image_id).shape == (48, 64)
        assert 1 <= len(voc.labels(image_id)) <= 3
    stamp = (tiny_set / "ImageSets" / "Segmentation" / "train.txt").stat().st_mtime_ns
    assert voc_sized_set(tiny_set.parent, images=6, size=(64, 48)) == tiny_set
    assert (tiny_set / "ImageSets" / "Segmentation" / "train.txt").stat().st_mtime_ns == stamp


def test_repeated_split_links_copies(tiny_set):
    split = repeated_split(tiny_set, 14)
    voc = VOCDataset(tiny_set, split)
    assert len(voc) == 14 and len(set(voc.ids)) == 14
    assert np.array_equal(voc.load_image(voc.ids[13]), voc.load_image(voc.ids[13 % 6]))


def test_cached_network_has_the_classifier_output_shape():
    net = CachedNetwork(20, [256, 100], batch_size=4)
    assert net.class_maps(torch.zeros(3, 3, 256, 256)).shape == (3, 20, 32, 32)
    assert net.class_maps(torch.zeros(4, 3, 100, 100)).shape == (4, 20, 13, 13)


@pytest.mark.slow
def test_bench_commands_run_on_their_own_set(tiny_set, tmp_path, capsys):
    cache = ["--cache", str(tiny_set.parent), "--set-images", "6", "--image-size", "64x48"]
    out = tmp_path / "pipe.json"
    assert (
        main(
            [
                "bench",
                "maps",
                "--pipeline-only",
                "--scales",
                "32",
                "48",
                "--flip",
                "--repeats",
                "1",
                "--batch-size",
                "4",
                "--out",
                str(out),
                *cache,
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["images"] == 6 and len(r["speedup_per_round"]) == 1 and r["machine"]["nproc"] >= 1
    assert r["cpu_ms_per_image"]["1"]["main_thread_ms"] > 0
    assert "pipeline only" in capsys.readouterr().out
    assert main(["bench", "labels", "--repeats", "1", "--out", str(tmp_path / "labels.json"), *cache]) == 0
    r = json.loads((tmp_path / "labels.json").read_text())
    assert r["images"] == 6 and r["score_labels_images_per_s"] > 0
    assert (
        main(
            [
                "bench",
                "loaders",
                "--images",
                "6",
                "--repeats",
                "1",
                "--memory",
                "8",
                "--out",
                str(tmp_path / "loaders.json"),
                *cache,
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "loaders.json").read_text())
    assert len(r["loaders"]) == 3 and all(len(rates) >= 2 for rates in r["loaders"].values())
    assert r["memory"]["8"]["train_refiner_peak_rss_mb"] > 50 and r["memory"]["8"]["train_refiner_seconds"] > 0
    assert "refiner training (one epoch) peak RSS" in capsys.readouterr().out
