"""Classifier training, map extraction, inspection and CAM scoring on a tiny synthetic set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drs.cli import main
from drs.config.settings import ClassifierSettings, MapsSettings
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.errors import UserError
from drs.inference.maps import extract_maps
from drs.store.model_files import load_classifier
from drs.store.reader import MapStore
from drs.training.classifier import train_classifier

SETTINGS = dict(
    width=0.125,
    batch_norm=True,
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


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "classifier"
    return train_classifier(dataset, "train", out, ClassifierSettings.from_dict(SETTINGS), "learnable")


def test_train_extract_inspect_eval(dataset, trained, tmp_path, capsys):
    model, record = load_classifier(trained)
    assert record["drs"] == "learnable" and record["class_names"][0] == "background"
    assert len(model.drs_modules()) > 0
    store_path = extract_maps(
        trained, dataset, "train", tmp_path / "train.h5", MapsSettings(scales=[40, 48], flip=True, batch_size=3)
    )
    with MapStore(store_path) as store:
        assert len(store) == 8 and store.stage == "cam" and store.scales == [40, 48]
        attrs = store.attrs
        assert len(attrs["checkpoint_sha256"]) == 64 and attrs["package_version"]
        assert attrs["config"]["training"]["settings"]["width"] == 0.125
        assert "state_dict" not in attrs["config"]["training"]
        for record in store:
            mask = np.array(
                __import__("PIL.Image", fromlist=["Image"]).open(
                    dataset / "SegmentationClass" / f"{record.image_id}.png"
                )
            )
            present = sorted(set(np.unique(mask).tolist()) - {0, 255})
            assert record.classes.tolist() == present  # only ground-truth classes are kept
            assert record.maps.shape == (len(present), 48, 48)
            # per-class max normalisation: every class map that is not all zero (ReLU) peaks at 255
            peaks = record.maps.reshape(len(present), -1).max(axis=1)
            assert set(peaks.tolist()) <= {0, 255} and peaks.max() == 255, peaks
    assert main(["inspect", str(store_path)]) == 0
    assert "images: 8" in capsys.readouterr().out
    assert main(["inspect", str(store_path), "--id", "train_00001", "--out", str(tmp_path / "o.png")]) == 0
    assert (tmp_path / "o.png").stat().st_size > 0

    metrics = tmp_path / "cam.json"
    assert main(["eval-maps", str(store_path), "--out", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    for key in ("miou", "pixel_accuracy", "per_class_iou", "split", "num_images"):
        assert key in result
    assert result["split"] == "train" and result["num_images"] == 8
    assert 0 <= result["miou"] <= 1 and set(result["per_class_iou"]) == set(record_names(dataset))
    cov = result["coverage"]
    assert 0 <= cov["part"] <= 1 and 0 <= cov["rest_of_object"] <= 1 and 0 <= cov["background"] <= 1
    # the threshold-background mIoU, recomputed here from the stored maps and the masks
    assert result["miou_threshold"] == pytest.approx(threshold_miou(store_path, dataset), abs=1e-9)


def threshold_miou(store_path, dataset, alpha=0.2, background=0.2, conflict=0.9):
    """Pseudo labels with a constant background score (maps below alpha dropped, arg-max, more than
    two scores above ``conflict`` ignored), scored by IoU per label present, averaged: an
    independent re-derivation of eval-maps' `miou_threshold`."""
    from PIL import Image

    names = record_names(dataset)
    inter, union = np.zeros(len(names)), np.zeros(len(names))
    with MapStore(store_path) as store:
        for record in store:
            gt = np.array(Image.open(dataset / "SegmentationClass" / f"{record.image_id}.png"))
            maps = record.maps.astype(np.float64) / 255
            scores = np.concatenate([np.full((1, *gt.shape), background), np.where(maps < alpha, 0, maps)])
            label = np.array([0, *record.classes.tolist()])[scores.argmax(0)]
            keep = (gt != 255) & ((scores > conflict).sum(0) <= 2)
            for c in range(len(names)):
                p, g = (label == c) & keep, (gt == c) & keep
                inter[c] += (p & g).sum()
                union[c] += (p | g).sum()
    return float(np.mean(inter[union > 0] / union[union > 0]))


def record_names(dataset):
    return (dataset / "class_names.txt").read_text().split()


def test_same_seed_gives_identical_maps(dataset, trained, tmp_path):
    again = train_classifier(dataset, "train", tmp_path / "again", ClassifierSettings.from_dict(SETTINGS), "learnable")
    a = extract_maps(trained, dataset, "train", tmp_path / "a.h5", MapsSettings(scales=[48], batch_size=4))
    b = extract_maps(again, dataset, "train", tmp_path / "b.h5", MapsSettings(scales=[48], batch_size=4))
    with MapStore(a) as sa, MapStore(b) as sb:
        for ra, rb in zip(sa, sb):
            assert ra.image_id == rb.image_id
            np.testing.assert_array_equal(ra.maps, rb.maps)


def test_resume_after_interrupted_epoch_ends_like_uninterrupted(dataset, trained, tmp_path):
    out = tmp_path / "resumed"
    settings = ClassifierSettings.from_dict(SETTINGS)
    # 8 images, batch 4: 2 steps per epoch; stop in the middle of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_classifier(dataset, "train", out, settings, "learnable", stop_after_steps=3)
    assert (out / "last.pt").exists() and not (out / "model.pt").exists()
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train_classifier(dataset, "train", out, settings, "learnable")
    a = torch.load(trained, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_fixed_and_none_variants_train(dataset, tmp_path):
    settings = ClassifierSettings.from_dict({**SETTINGS, "epochs": 1})
    for drs, delta, n_modules in (("fixed", 0.55, True), ("none", None, False)):
        ckpt = train_classifier(dataset, "train", tmp_path / drs, settings, drs, delta)
        model, record = load_classifier(ckpt)
        assert record["delta"] == delta
        assert bool(model.drs_modules()) == n_modules


def test_checkpoint_and_settings_errors(tmp_path, dataset):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_classifier(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_classifier(bad)
    torch.save({"kind": "something"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a checkpoint of drs train-classifier"):
        load_classifier(tmp_path / "other.pt")
    with pytest.raises(UserError, match="config key 'classifier': unknown key"):
        ClassifierSettings.from_dict({"widht": 0.5})
    with pytest.raises(UserError, match="crop_size"):
        ClassifierSettings.from_dict({"input_size": 32, "crop_size": 40})


def test_extract_refuses_other_classes(trained, tmp_path):
    other = generate(
        tmp_path / "other",
        SynthSpec(num_train=2, num_val=1, image_size=48, num_classes=2, object_size=(20, 32)),
        workers=1,
    )
    with pytest.raises(UserError, match="trained on classes"):
        extract_maps(trained, other, "train", tmp_path / "x.h5", MapsSettings(scales=[48]))
    assert not (tmp_path / "x.h5").exists()


def test_checkpoint_of_other_settings_is_not_resumed(dataset, tmp_path, caplog):
    out = tmp_path / "changed"
    with pytest.raises(KeyboardInterrupt):
        train_classifier(dataset, "train", out, ClassifierSettings.from_dict(SETTINGS), "learnable", stop_after_steps=3)
    assert (out / "last.pt").exists()
    changed = ClassifierSettings.from_dict({**SETTINGS, "lr": 0.02, "epochs": 1})
    with caplog.at_level("WARNING"):
        train_classifier(dataset, "train", out, changed, "learnable")
    assert "starting afresh: other settings (record.settings.epochs was 2 in last.pt, is 1 now)" in caplog.text
    assert torch.load(out / "model.pt", weights_only=True)["settings"]["lr"] == 0.02
