"""Resumption and map stores are tied to the data they were made from (drs.data.fingerprint).

Faults pinned here: a rerun after the training data changed resumed from ``last.pt`` and handed back
the old model; an unreadable ``last.pt`` failed every rerun; a map store of another dataset (same
ids, other images; or ids the dataset lacks) was scored, labelled or trained on silently.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from drs.config.settings import ClassifierSettings, MapsSettings, PseudoLabelSettings
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset, save_label_png
from drs.errors import UserError
from drs.inference.maps import extract_maps
from drs.labels.scoring import evaluate_store
from drs.labels.writer import generate_pseudo_labels
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from drs.training.classifier import train_classifier

# the issue's $S, at 48 px to stay fast
SETTINGS = dict(
    width=0.125,
    batch_norm=True,
    extra_batch_norm=True,
    stages=3,
    pretrained="none",
    input_size=48,
    crop_size=40,
    epochs=1,
    batch_size=4,
)


def spec(seed: int) -> SynthSpec:
    return SynthSpec(seed=seed, num_train=8, num_val=4, image_size=48, num_classes=3, object_size=(20, 32), clutter=2)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def copy_plain(src: Path, dst: Path) -> Path:
    """``cp -r`` without -p: same bytes, new mtimes."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    return dst


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(ds: seed 1, other: seed 2 with the same ids, classifier trained on ds, its train store)."""
    root = tmp_path_factory.mktemp("fingerprint")
    ds = generate(root / "ds", spec(1), workers=1)
    other = generate(root / "other", spec(2), workers=1)
    model = train_classifier(ds, "train", root / "classifier", ClassifierSettings.from_dict(SETTINGS), "learnable")
    store = extract_maps(model, ds, "train", root / "train.h5", MapsSettings(scales=[48], batch_size=4))
    return ds, other, model, store


def test_rerun_on_changed_data_trains_afresh(data, tmp_path, caplog):
    """The issue's reproduction: cp -r ds ds2; train; append val ids to train.txt and change the
    JPEGs; rerun. It used to resume "after epoch 1 of 1" and write a byte-identical model.pt."""
    ds, other, _, _ = data
    ds2 = copy_plain(ds, tmp_path / "ds2")
    out = tmp_path / "c"
    settings = ClassifierSettings.from_dict(SETTINGS)
    first = train_classifier(ds2, "train", out, settings, "learnable")
    before = digest(first)

    # unchanged data (and a copy's new mtimes do not count): resumed, the same model
    with caplog.at_level("INFO", logger="drs.train"):
        train_classifier(ds2, "train", out, settings, "learnable")
    assert "resuming from" in caplog.text and "after epoch 1 of 1" in caplog.text and digest(out / "model.pt") == before
    caplog.clear()

    train_txt = ds2 / "ImageSets/Segmentation/train.txt"
    val_ids = (ds2 / "ImageSets/Segmentation/val.txt").read_text()
    train_txt.write_text(train_txt.read_text() + val_ids)
    for jpg in (ds2 / "JPEGImages").glob("*.jpg"):
        shutil.copyfile(other / "JPEGImages" / jpg.name, jpg)
    with caplog.at_level("INFO", logger="drs.train"):
        again = train_classifier(ds2, "train", out, settings, "learnable")
    assert "after epoch" not in caplog.text
    assert "starting afresh: the training data changed (record.data_fingerprint" in caplog.text
    assert digest(again) != before
    # recorded in model.pt and in last.pt
    recorded = torch.load(again, weights_only=True)["data_fingerprint"]
    assert recorded["num_images"] == 12 and recorded["kinds"] == ["images", "masks"]
    assert torch.load(out / "last.pt", weights_only=True)["record"]["data_fingerprint"] == recorded


def test_segmenter_rerun_on_changed_labels_trains_afresh(data, tmp_path, caplog):
    """The segmenter's labels folder is part of its data: new pseudo labels, a new model."""
    from drs.config.settings import SegmenterSettings
    from drs.training.segmenter import train_segmenter

    ds = data[0]
    voc = VOCDataset(ds, "train")
    labels = tmp_path / "labels"
    labels.mkdir()
    for image_id in voc.ids:
        save_label_png(labels / f"{image_id}.png", voc.load_mask(image_id))
    settings = SegmenterSettings.from_dict(
        dict(
            backbone="resnet18",
            width=0.125,
            pretrained="none",
            epochs=1,
            batch_size=4,
            crop_size=32,
            scale_range=[1.0, 1.0],
        )
    )
    out = tmp_path / "seg"
    before = digest(train_segmenter(ds, "train", labels, out, settings))
    for image_id in voc.ids:  # other labels, same images
        save_label_png(labels / f"{image_id}.png", np.zeros(voc.load_mask(image_id).shape, np.uint8))
    with caplog.at_level("INFO", logger="drs.train"):
        after = digest(train_segmenter(ds, "train", labels, out, settings))
    assert "after epoch" not in caplog.text and "the training data changed" in caplog.text
    assert after != before


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"], ids=["empty", "truncated"])
def test_unreadable_last_checkpoint_is_set_aside(data, tmp_path, caplog, content):
    ds = data[0]
    out = tmp_path / "c"
    out.mkdir()
    (out / "last.pt").write_bytes(content)
    with caplog.at_level("WARNING", logger="drs.train"):
        model = train_classifier(ds, "train", out, ClassifierSettings.from_dict(SETTINGS), "learnable")
    assert model.exists() and (out / "last.pt").exists()
    assert (out / "last.pt.unreadable").read_bytes() == content
    assert "last.pt is unreadable" in caplog.text and "starting afresh" in caplog.text


def test_store_records_the_dataset_fingerprint(data, capsys):
    from drs.cli import main

    ds, _, _, store = data
    with MapStore(store) as opened:
        recorded = opened.attrs["dataset_fingerprint"]
    assert recorded["kinds"] == ["images", "masks"] and recorded["num_images"] == 8 and len(recorded["digest"]) == 64
    assert main(["inspect", str(store)]) == 0
    assert f"dataset fingerprint: fingerprint {recorded['digest'][:12]} (8 images" in capsys.readouterr().out


def test_store_of_another_dataset_is_refused_at_every_use(data, tmp_path):
    """Same ids, other images (another seed): eval-maps, pseudo-labels and train-refiner refuse the
    store and name both; a plain copy of the store's own dataset (new mtimes) is accepted."""
    from drs.data.datasets import RefineSet

    ds, other, _, store = data
    copy = copy_plain(ds, tmp_path / "copy")
    assert evaluate_store(store, copy)["num_images"] == 8  # no false alarm on a copy

    with pytest.raises(UserError) as err:
        evaluate_store(store, other)
    message = str(err.value)
    assert str(store) in message and str(ds.resolve()) in message and str(other) in message
    assert "has other data" in message
    out = tmp_path / "labels"
    with pytest.raises(UserError, match="has other data"):
        generate_pseudo_labels(store, out, dataset=other, workers=1)
    assert not out.exists()
    with pytest.raises(UserError, match="has other data"):
        RefineSet(VOCDataset(other, "train"), store, 48, 40)


def test_store_ids_absent_from_the_dataset_are_refused(data, tmp_path):
    """The dataset lacks the store's ids: no "mask not found" and, following that message's
    --missing-saliency threshold hint, no labels for ids the dataset does not have."""
    ds, _, _, store = data
    small = generate(
        tmp_path / "small",
        SynthSpec(seed=1, num_train=4, num_val=2, image_size=48, num_classes=3, object_size=(20, 32), clutter=2),
        workers=1,
    )
    train_txt = small / "ImageSets/Segmentation/train.txt"
    train_txt.write_text("".join(f"other_{i}\n" for i in range(4)))
    with pytest.raises(UserError, match=r"8 of its 8 images are not in .*small's split 'train'"):
        evaluate_store(store, small)
    out = tmp_path / "labels"
    with pytest.raises(UserError, match="images are not in") as err:
        generate_pseudo_labels(
            store, out, dataset=small, settings=PseudoLabelSettings(missing_saliency="threshold"), workers=1
        )
    assert str(ds.resolve()) in str(err.value) and not out.exists()


def test_store_without_fingerprint_is_used_with_a_warning(data, tmp_path, caplog):
    """A store from before fingerprints stays readable; the log says it could not be checked."""
    ds = data[0]
    voc = VOCDataset(ds, "train")
    old = tmp_path / "old.h5"
    with (
        MapStore(data[3]) as src,
        MapStoreWriter(
            old, class_names=src.class_names, scales=src.scales, flip=False, stage="cam", split="train", dataset=str(ds)
        ) as writer,
    ):
        writer.add_store(src)
    with caplog.at_level("WARNING"):
        assert evaluate_store(old, ds)["num_images"] == len(voc)
    assert "records no dataset fingerprint" in caplog.text and str(old) in caplog.text
