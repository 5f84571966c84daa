"""`pseudo_labels.saliency: none` and `missing_saliency: threshold` carry through the dataset check
(`drs check-dataset --saliency --missing-saliency`) and `drs eval-maps`, as they do through
`drs pseudo-labels`: a dataset with a saliency map missing, or none at all, gets past the check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from drs.cli import main
from drs.config.settings import PseudoLabelSettings
from drs.data.check import check_dataset
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.labels.scoring import evaluate_store
from drs.store.writer import MapStoreWriter
from helpers import TINY_CONFIG, snakemake

SPEC = SynthSpec(num_train=4, num_val=2, image_size=32, object_size=(12, 20), num_classes=2)


@pytest.fixture(scope="module")
def synthetic(synth_dataset):
    return synth_dataset(SPEC)


@pytest.fixture
def dataset(synthetic, tmp_path):
    """A copy of the synthetic set with its first training image's saliency map deleted."""
    root = shutil.copytree(synthetic, tmp_path / "synth")
    first = VOCDataset(root, "train").ids[0]
    (root / "saliency_map" / f"{first}.png").unlink()
    return root, first


def store_of(root: Path, path: Path) -> Path:
    """A map store of the training split whose maps are the ground-truth masks."""
    voc = VOCDataset(root, "train")
    with MapStoreWriter(
        path, class_names=voc.class_names, scales=[32], flip=False, stage="cam", split="train", dataset=str(root)
    ) as writer:
        for image_id in voc.ids:
            mask, classes = voc.load_mask(image_id), voc.labels(image_id)
            writer.add(image_id, classes, np.stack([(mask == c).astype(np.float32) for c in classes]))
    return path


def test_check_follows_the_saliency_options(dataset):
    root, first = dataset
    missing = str(root / "saliency_map" / f"{first}.png")
    # the default and saliency_map + error: a missing map is a problem
    for options in ({}, {"saliency": "saliency_map"}, {"saliency": "saliency_map", "missing_saliency": "error"}):
        report = check_dataset(root, workers=1, **options)
        assert [str(p) for p in report.problems] == [f"{missing}: saliency map missing"], options
    # threshold: a warning naming it; none: not checked
    report = check_dataset(root, workers=1, saliency="saliency_map", missing_saliency="threshold")
    assert report.ok and len(report.warnings) == 1 and first in report.warnings[0].message
    assert "1 of 6" in report.warnings[0].message
    report = check_dataset(root, workers=1, saliency="none")
    assert report.ok and report.warnings == []
    # a map that is there but broken stays a problem with threshold
    other = VOCDataset(root, "train").ids[1]
    (root / "saliency_map" / f"{other}.png").write_bytes(b"not a png")
    report = check_dataset(root, workers=1, saliency="saliency_map", missing_saliency="threshold")
    assert [p.path for p in report.problems] == [str(root / "saliency_map" / f"{other}.png")]
    assert check_dataset(root, workers=1, saliency="none").ok
    with pytest.raises(UserError, match="missing_saliency must be one of"):
        check_dataset(root, workers=1, missing_saliency="skip")


def test_check_without_a_saliency_folder(dataset):
    root, _ = dataset
    shutil.rmtree(root / "saliency_map")
    assert check_dataset(root, workers=1).ok  # no options: nothing to check
    assert check_dataset(root, workers=1, saliency="none").ok
    report = check_dataset(root, workers=1, saliency="saliency_map")
    assert [p.path for p in report.problems] == [str(root / "saliency_map")]
    assert "saliency folder missing" in report.problems[0].message
    report = check_dataset(root, workers=1, saliency="saliency_map", missing_saliency="threshold")
    assert report.ok and [w.path for w in report.warnings] == [str(root / "saliency_map")]


def test_check_command_takes_the_options(dataset, tmp_path, capsys):
    root, first = dataset
    out = tmp_path / "check.json"
    base = ["check-dataset", str(root), "--workers", "1", "--json", str(out)]
    assert main(base) == 1 and not out.exists()
    assert main([*base, "--saliency", "saliency_map", "--missing-saliency", "threshold"]) == 0
    printed = capsys.readouterr().out
    assert "warning: " in printed and first in printed and "OK" in printed
    data = json.loads(out.read_text())
    assert data["ok"] and len(data["warnings"]) == 1 and data["problems"] == []
    assert main([*base, "--saliency", "none"]) == 0
    assert "saliency: not used" in capsys.readouterr().out
    assert json.loads(out.read_text())["warnings"] == []


def test_eval_maps_takes_the_pseudo_label_options(dataset, tmp_path):
    root, first = dataset
    store = store_of(root, tmp_path / "cam.h5")
    with pytest.raises(UserError, match=f"{first}.png: saliency map not found"):
        evaluate_store(store, root)
    result = evaluate_store(store, root, PseudoLabelSettings(missing_saliency="threshold"))
    assert result["background_cue"] == "saliency" and result["threshold_images"] == 1
    assert result["missing_saliency"] == "threshold"
    none = evaluate_store(store, root, PseudoLabelSettings(saliency="none"))
    assert none["background_cue"] == "threshold" and none["miou"] == none["miou_threshold"]
    out = tmp_path / "cam.json"
    assert (
        main(["eval-maps", str(store), "--dataset", str(root), "--out", str(out), "--missing-saliency", "threshold"])
        == 0
    )
    assert json.loads(out.read_text())["threshold_images"] == 1
    # the same background cues as drs pseudo-labels: one label set, one score
    labels = tmp_path / "labels"
    assert (
        main(
            [
                "pseudo-labels",
                str(store),
                "--out",
                str(labels),
                "--dataset",
                str(root),
                "--missing-saliency",
                "threshold",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    scored = tmp_path / "scored.json"
    assert main(["score-labels", str(labels), "--dataset", str(root), "--split", "train", "--out", str(scored)]) == 0
    assert json.loads(scored.read_text())["miou"] == pytest.approx(result["miou"])


@pytest.mark.slow
@pytest.mark.parametrize("setting", [{"saliency": "none"}, {"missing_saliency": "threshold"}])
def test_workflow_data_stage_follows_the_config(dataset, workdir, setting):
    root, first = dataset
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config.update(dataset="folder", dataset_dir=str(root), pseudo_labels=setting)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", "--configfile", str(path), "--", "data")
    log = workdir / "results" / "logs" / "check_dataset.log"
    assert result.returncode == 0, log.read_text() if log.exists() else result.stderr
    report = json.loads((workdir / "results" / "data" / "dataset_check.json").read_text())
    assert report["ok"]
    assert (first in log.read_text()) == (setting == {"missing_saliency": "threshold"})
