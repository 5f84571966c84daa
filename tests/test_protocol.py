"""cam.json / refined.json carry ours (ignore steps, ignored pixels left out) and the reference's
scoring protocol (scripts/test_cls.py: no ignore step, every pixel counted), each named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drs.cli import main
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.labels.rule import pseudo_label, reference_label
from drs.report.tables import comparison_rows
from drs.store.writer import MapStoreWriter


def test_reference_label_ignores_nothing():
    classes = np.array([1, 2])
    maps = np.array([[[0.95, 0.1]], [[0.92, 0.1]]], dtype=np.float32)
    saliency = np.array([[0.0, 1.0]], dtype=np.float32)  # grey 0 (background score 1), grey 255
    # ours: pixel 0 has three scores above 0.9 -> 255; pixel 1 is salient background -> 255
    assert pseudo_label(classes, maps, saliency).tolist() == [[255, 255]]
    # the reference's scoring labels: the arg-max everywhere (ties -> background)
    assert reference_label(classes, maps, saliency).tolist() == [[0, 0]]
    assert reference_label(classes, maps * 0 + 0.3, np.array([[60, 40]], np.float32) / 255).tolist() == [[1, 0]]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    data = generate(
        root / "data",
        SynthSpec(num_train=6, num_val=1, image_size=32, num_classes=2, object_size=(12, 20), clutter=0),
        workers=1,
    )
    voc = VOCDataset(data, "train")
    path = root / "train.h5"
    with MapStoreWriter(
        path, class_names=list(voc.class_names), scales=[32], flip=False, stage="cam", split="train", dataset=str(data)
    ) as w:
        for image_id in voc.ids:
            mask = voc.load_mask(image_id)
            classes = voc.labels(image_id)
            # maps near-perfect on the objects, plus a conflict band so that ours ignores pixels
            maps = np.stack([(mask == c).astype(np.float32) * 0.95 for c in classes])
            maps[:, :4] = 0.95
            w.add(image_id, classes, maps)
    (data / "ImageSets" / "Segmentation" / "sub.txt").write_text("\n".join(voc.ids[:3]) + "\n")
    return data, path


def test_eval_maps_and_score_labels_carry_both_protocols(store, tmp_path):
    data, path = store
    out = tmp_path / "cam.json"
    assert (
        main(
            [
                "eval-maps",
                str(path),
                "--dataset",
                str(data),
                "--out",
                str(out),
                "--reference-split",
                "sub",
                "--headline-protocol",
                "reference",
            ]
        )
        == 0
    )
    cam = json.loads(out.read_text())
    assert (
        cam["protocol"]["name"] == "ours" and cam["protocol"]["split"] == "train" and cam["protocol"]["num_images"] == 6
    )
    assert cam["protocol"]["saliency_threshold"] == 50 and cam["ignored_fraction"] > 0
    ref = cam["reference_protocol"]
    assert ref["protocol"]["name"] == "reference" and ref["protocol"]["split"] == "sub" and ref["num_images"] == 3
    assert "ignored_fraction" not in ref and 0 <= ref["miou"] <= 1 and cam["headline_protocol"] == "reference"

    labels = tmp_path / "labels"
    assert main(["pseudo-labels", str(path), "--out", str(labels), "--dataset", str(data), "--workers", "1"]) == 0
    out = tmp_path / "refined.json"
    assert (
        main(
            [
                "score-labels",
                str(labels),
                "--dataset",
                str(data),
                "--split",
                "train",
                "--out",
                str(out),
                "--store",
                str(path),
            ]
        )
        == 0
    )
    refined = json.loads(out.read_text())
    assert refined["miou"] == pytest.approx(cam["miou"])  # same labels, same rule
    assert refined["reference_protocol"]["protocol"]["split"] == "train" and refined["headline_protocol"] == "ours"
    # the reference's rule never ignores: on the whole split its pixel accuracy counts every pixel
    assert refined["reference_protocol"]["num_images"] == 6
    # and the store's coverage, as eval-maps measures it (the report prints it under the refined column)
    coverage = refined["reference_protocol"]["coverage"]
    assert set(coverage) >= {"part", "rest_of_object", "background"}
    assert coverage == pytest.approx(cam["coverage"])

    rows = comparison_rows({("drs", "cam"): {**cam, "stage": "cam"}, ("drs", "refined"): refined})
    assert rows[0].miou == pytest.approx(ref["miou"]) and rows[0].split == "sub" and rows[0].lead == "reference"
    assert rows[1].miou == pytest.approx(refined["miou"])  # headline: ours


def test_reference_split_outside_the_store_is_refused(store, tmp_path, capsys):
    data, path = store
    (data / "ImageSets" / "Segmentation" / "other.txt").write_text("nope\n")
    assert main(["eval-maps", str(path), "--dataset", str(data), "--reference-split", "other"]) == 2
    assert "(e.g. 'nope') have no maps" in capsys.readouterr().err
