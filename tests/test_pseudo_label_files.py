"""Pseudo-label files: `write_pseudo_labels` (PNGs over all cores, atomic folder), `score_labels`,
the `pseudo-labels` / `score-labels` commands and `drs bench pseudo-labels`, on a tiny synthetic set
whose maps are blurred ground-truth masks."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drs.cli import main
from drs.config.settings import PseudoLabelSettings
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset, read_label_png, save_label_png
from drs.errors import UserError
from drs.labels import writer as pl
from drs.labels.rule import pseudo_label
from drs.labels.scoring import score_labels
from drs.labels.writer import write_pseudo_labels
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from helpers import box_blur

SPEC = SynthSpec(num_train=6, num_val=2, image_size=48, object_size=(20, 30), num_classes=3)


def _make_store(path: Path, root: Path, split: str = "train") -> Path:
    voc = VOCDataset(root, split)
    with MapStoreWriter(
        path, class_names=voc.class_names, scales=[48], flip=False, stage="cam", split=split, dataset=str(root)
    ) as writer:
        for image_id in voc.ids:
            mask = voc.load_mask(image_id)
            classes = voc.labels(image_id)
            maps = np.zeros((len(classes), *mask.shape), np.float32)
            for k, c in enumerate(classes):
                maps[k] = box_blur((mask == c).astype(np.float32))
            writer.add(image_id, classes, maps)
    return path


@pytest.fixture(scope="module")
def setup(synth_dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("pl")
    root = synth_dataset(SPEC)
    store = _make_store(base / "cam.h5", root)
    return root, store


@pytest.fixture
def own_data(setup, tmp_path):
    """A copy of the dataset and a store pointing at it, for tests that delete files."""
    root = tmp_path / "synth"
    shutil.copytree(setup[0], root)
    return root, _make_store(tmp_path / "cam.h5", root)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_writes_one_palette_png_per_image(setup, tmp_path):
    root, store = setup
    out = write_pseudo_labels(store, tmp_path / "labels", workers=1)
    assert out == tmp_path / "labels"
    with MapStore(store) as s:
        ids = s.ids
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{i}.png" for i in ids)
    values = set()
    for image_id in ids:
        with Image.open(out / f"{image_id}.png") as image:
            assert image.mode == "P" and image.size == (48, 48)
        values |= set(np.unique(read_label_png(out / f"{image_id}.png")).tolist())
    assert values <= {0, 1, 2, 3, 255}
    assert values & {1, 2, 3}, "maps made from the masks must give object labels"


def test_file_equals_the_rule(setup, tmp_path):
    root, store = setup
    out = write_pseudo_labels(
        store, tmp_path / "labels", settings=PseudoLabelSettings(alpha=0.3, conflict_score=0.8), workers=1
    )
    voc = VOCDataset(root, "train")
    with MapStore(store) as s:
        for image_id in s.ids[:2]:
            record = s.read(image_id)
            expected = pseudo_label(
                record.classes,
                record.float(),
                voc.load_saliency(image_id),
                alpha=0.3,
                bg_threshold=0.2,
                conflict_score=0.8,
            )
            assert np.array_equal(read_label_png(out / f"{image_id}.png"), expected)


def test_workers_give_identical_files(setup, tmp_path):
    root, store = setup
    one = write_pseudo_labels(store, tmp_path / "one", workers=1)
    two = write_pseudo_labels(store, tmp_path / "two", workers=2)
    assert _files(one) == _files(two)
    default = write_pseudo_labels(store, tmp_path / "all", dataset=root)
    assert _files(one) == _files(default)


def test_threshold_background_without_saliency(setup, tmp_path):
    root, store = setup
    out = write_pseudo_labels(
        store, tmp_path / "labels", settings=PseudoLabelSettings(saliency="none", bg_threshold=0.35), workers=1
    )
    with MapStore(store) as s:
        record = s.read(s.ids[0])
    expected = pseudo_label(record.classes, record.float(), None, alpha=0.2, bg_threshold=0.35, conflict_score=0.9)
    assert np.array_equal(read_label_png(out / f"{record.image_id}.png"), expected)


def test_missing_saliency_map(own_data, tmp_path, caplog):
    root, store = own_data
    voc = VOCDataset(root, "train")
    gone = voc.ids[1]
    voc.saliency_path(gone).unlink()
    out = tmp_path / "labels"
    with pytest.raises(UserError, match=str(voc.saliency_path(gone))):
        write_pseudo_labels(store, out, workers=1)
    assert not out.exists() and not (tmp_path / ".labels.partial").exists()

    with caplog.at_level(logging.WARNING, logger="drs.pseudo_labels"):
        write_pseudo_labels(store, out, settings=PseudoLabelSettings(missing_saliency="threshold"), workers=2)
    assert "1 of 6 images have no saliency map" in caplog.text
    with MapStore(store) as s:
        record = s.read(gone)
        other = s.read(voc.ids[0])
    assert np.array_equal(read_label_png(out / f"{gone}.png"), pseudo_label(record.classes, record.float(), None))
    with_saliency = pseudo_label(other.classes, other.float(), voc.load_saliency(other.image_id))
    assert np.array_equal(read_label_png(out / f"{other.image_id}.png"), with_saliency)


def test_bad_choices_are_user_errors(setup, tmp_path):
    _, store = setup
    with pytest.raises(UserError, match="saliency"):
        write_pseudo_labels(store, tmp_path / "x", settings=PseudoLabelSettings(saliency="sal"))
    with pytest.raises(UserError, match="missing_saliency"):
        write_pseudo_labels(store, tmp_path / "x", settings=PseudoLabelSettings(missing_saliency="skip"))
    with pytest.raises(UserError, match="workers"):
        write_pseudo_labels(store, tmp_path / "x", workers=0)


def test_out_dir_replaced_atomically(setup, tmp_path, monkeypatch):
    _, store = setup
    out = tmp_path / "labels"
    write_pseudo_labels(
        store, out, settings=PseudoLabelSettings(saliency="none"), workers=1
    )  # a folder this command wrote...
    (out / "stale.png").write_bytes(b"old")
    leftover = tmp_path / ".labels.partial"
    leftover.mkdir()
    (leftover / "junk.png").write_bytes(b"junk")
    write_pseudo_labels(store, out, workers=2)  # ...is replaced whole
    assert not (out / "stale.png").exists() and len(list(out.glob("*.png"))) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]

    # a failure half-way leaves the previous folder as it was and no partial folder
    before = _files(out)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return pseudo_label(*args, **kwargs)

    monkeypatch.setattr(pl, "pseudo_label", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_pseudo_labels(store, out, settings=PseudoLabelSettings(saliency="none"), workers=1)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        write_pseudo_labels(store, tmp_path / "fresh", workers=1)
    assert not (tmp_path / "fresh").exists() and not (tmp_path / ".fresh.partial").exists()


def test_refuses_to_replace_other_folders(setup, tmp_path):
    _, store = setup
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not written by drs"):
        write_pseudo_labels(store, out, workers=1)
    assert (out / "notes.txt").read_text() == "keep me"
    write_pseudo_labels(store, tmp_path / "labels", workers=1)
    (tmp_path / "labels" / "notes.txt").write_text("mine")  # a file added to a folder drs wrote
    with pytest.raises(UserError, match="notes.txt"):
        write_pseudo_labels(store, tmp_path / "labels", workers=1)
    assert (tmp_path / "labels" / "notes.txt").read_text() == "mine"


def test_score_labels(setup, tmp_path):
    root, store = setup
    voc = VOCDataset(root, "train")
    truth = tmp_path / "truth"
    truth.mkdir()
    for image_id in voc.ids:
        save_label_png(truth / f"{image_id}.png", voc.load_mask(image_id))
    perfect = score_labels(truth, root, "train")
    assert perfect["miou"] == pytest.approx(1.0) and perfect["pixel_accuracy"] == pytest.approx(1.0)
    assert perfect["ignored_fraction"] == 0 and perfect["num_images"] == 6
    assert perfect["split"] == "train" and perfect["labels"] == str(truth)

    labels = write_pseudo_labels(store, tmp_path / "labels", workers=1)
    result = score_labels(labels, root, "train")
    assert 0.0 <= result["ignored_fraction"] <= 1.0 and 0.0 < result["miou"] <= 1.0
    assert set(result["per_class_iou"]) == set(voc.class_names)

    (labels / f"{voc.ids[2]}.png").unlink()
    with pytest.raises(UserError, match=f"{voc.ids[2]}.png: label not found"):
        score_labels(labels, root, "train")


def test_cli_pseudo_labels_and_score(setup, tmp_path, capsys):
    root, store = setup
    out = tmp_path / "labels"
    assert main(["pseudo-labels", str(store), "--out", str(out), "--workers", "2", "--alpha", "0.25"]) == 0
    text = capsys.readouterr().out
    assert "wrote 6 pseudo labels" in text and "ignored" in text and "images/s" in text
    assert len(list(out.glob("*.png"))) == 6

    metrics = tmp_path / "m" / "score.json"
    assert main(["score-labels", str(out), "--dataset", str(root), "--split", "train", "--out", str(metrics)]) == 0
    assert "mIoU" in capsys.readouterr().out
    result = json.loads(metrics.read_text())
    assert {"miou", "pixel_accuracy", "per_class_iou", "split", "num_images", "ignored_fraction"} <= set(result)
    assert result["split"] == "train" and result["num_images"] == 6
    assert not list(metrics.parent.glob(".*"))

    # user errors: exit 2, message names the file
    assert main(["score-labels", str(tmp_path / "absent"), "--dataset", str(root), "--split", "train"]) == 2
    assert "absent: label folder not found" in capsys.readouterr().err
    assert main(["pseudo-labels", str(tmp_path / "none.h5"), "--out", str(out)]) == 2
    assert "none.h5: map store not found" in capsys.readouterr().err


def test_cli_missing_saliency(own_data, tmp_path, capsys):
    root, store = own_data
    voc = VOCDataset(root, "train")
    voc.saliency_path(voc.ids[0]).unlink()
    out = tmp_path / "labels"
    assert main(["pseudo-labels", str(store), "--out", str(out)]) == 2
    assert str(voc.saliency_path(voc.ids[0])) in capsys.readouterr().err
    args = ["pseudo-labels", str(store), "--out", str(out), "--missing-saliency", "threshold", "--workers", "1"]
    assert main(args) == 0
    assert main(["pseudo-labels", str(store), "--out", str(out), "--saliency", "none", "--dataset", str(root)]) == 0
    assert len(list(out.glob("*.png"))) == 6


def test_bench_pseudo_labels(setup, tmp_path, capsys):
    _, store = setup
    out = tmp_path / "bench.json"
    assert (
        main(["bench", "pseudo-labels", "--store", str(store), "--images", "6", "--repeats", "1", "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert "1 worker:" in text and "speed-up" in text
    result = json.loads(out.read_text())
    assert result["images"] == 6
    assert result["single_images_per_s"] > 0 and result["parallel_images_per_s"] > 0
    assert result["speedup"] == pytest.approx(result["parallel_images_per_s"] / result["single_images_per_s"])
    assert result["machine"]["usable_cores"] >= 1
