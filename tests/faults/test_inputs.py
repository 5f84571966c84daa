"""Bad input gets a named one-line error, never a traceback or a file written outside its folder.

Each test pins one fault of the reliability issue (defects 4, 8 and 11): split-list ids that
escape the output folder, truncated PNGs, wrong-size saliency maps, out-of-range segmenter labels,
checkpoints of another shape, a results_dir that is a file, wrongly typed settings, a YAML syntax
error, and the map benchmark's class check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drs.cli import main
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset, read_split, save_label_png
from drs.errors import UserError

CLASSIFIER = {
    "width": 0.125,
    "batch_norm": True,
    "extra_batch_norm": True,
    "stages": 3,
    "pretrained": "none",
    "input_size": 64,
    "crop_size": 56,
    "epochs": 1,
    "batch_size": 4,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("in") / "ds"
    return generate(root, SynthSpec(seed=1, num_train=6, num_val=2, image_size=48, object_size=(20, 32)), workers=1)


@pytest.fixture
def ds(dataset, tmp_path) -> Path:
    """A private copy of the tiny dataset, to break."""
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    return root


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory) -> Path:
    """A tiny classifier's model.pt (untrained: saved the way train-classifier saves it)."""
    from drs.config.settings import ClassifierSettings
    from drs.store.model_files import save_model
    from drs.training.classifier import build_classifier

    settings = ClassifierSettings.from_dict(CLASSIFIER)
    voc = VOCDataset(dataset, "train")
    model = build_classifier(voc.num_classes, settings, "learnable", None)
    record = {
        "kind": "classifier",
        "model_config": model.config,
        "settings": {},
        "drs": "learnable",
        "delta": None,
        "class_names": list(voc.class_names),
        "dataset": str(dataset),
        "split": "train",
    }
    return save_model(model, record, tmp_path_factory.mktemp("clf"))


def split_file(root: Path, split: str) -> Path:
    return root / "ImageSets" / "Segmentation" / f"{split}.txt"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -- defect 4: split-list ids ---------------------------------------------------------------------
BAD_IDS = ["../../x", "a/b", "a\\b", ".hidden", "..", "train 00003", "tab\tid", "bell\x07id"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_reader_rejects_bad_id_naming_file_and_line(ds, bad):
    ids = split_file(ds, "val").read_text().split()
    split_file(ds, "val").write_text("\n".join([ids[0], bad, *ids[1:]]) + "\n")
    with pytest.raises(UserError, match=r"val\.txt:2: .*id"):
        read_split(ds, "val")
    with pytest.raises(UserError, match=r"val\.txt:2:"):
        VOCDataset(ds, "val")


def test_reader_keeps_good_ids_and_line_ends(ds):
    ids = split_file(ds, "val").read_text().split()
    split_file(ds, "val").write_text("\r\n".join(["", f"  {ids[0]}  ", *ids[1:]]) + "\r\n\n")
    assert read_split(ds, "val") == ids


def test_check_dataset_reports_escaping_id(ds, capsys):
    """`../../x` with x.jpg/x.png present two levels up passed the check before."""
    (ds / "x.jpg").parent.mkdir(exist_ok=True)
    first = split_file(ds, "val").read_text().split()[0]
    # the files `../../x` points at, from JPEGImages/ and SegmentationClass/: <ds>/../x.*
    shutil.copy(ds / "JPEGImages" / f"{first}.jpg", ds.parent / "x.jpg")
    for folder in ("SegmentationClass", "saliency_map", "SegmentationPart"):
        shutil.copy(ds / folder / f"{first}.png", ds.parent / "x.png")
    with split_file(ds, "val").open("a") as f:
        f.write("../../x\n")
    assert main(["check-dataset", str(ds)]) == 1
    out = capsys.readouterr().out
    line = len(split_file(ds, "val").read_text().splitlines())
    assert f"val.txt:{line}: " in out and "../../x" in out


def test_check_dataset_names_id_with_space(ds, capsys):
    """`train 00003` was reported as `JPEGImages/train.jpg: image missing`."""
    with split_file(ds, "train").open("a") as f:
        f.write("train 00003\n")
    assert main(["check-dataset", str(ds)]) == 1
    out = capsys.readouterr().out
    assert "train.jpg" not in out
    assert "'train 00003'" in out and "whitespace" in out


# -- defect 8: named errors instead of tracebacks ---------------------------------------------------
def test_truncated_mask_and_saliency_named(ds):
    voc = VOCDataset(ds, "train")
    image_id = voc.ids[0]
    truncate(voc.mask_path(image_id))
    truncate(voc.saliency_path(image_id))
    with pytest.raises(UserError, match=str(voc.mask_path(image_id))):
        voc.load_mask(image_id)
    with pytest.raises(UserError, match=str(voc.saliency_path(image_id))):
        voc.load_saliency(image_id)


def _store_from_masks(voc: VOCDataset, path: Path) -> Path:
    """A map store whose maps are the ground-truth masks (no model needed)."""
    from drs.store.writer import MapStoreWriter

    with MapStoreWriter(
        path, class_names=voc.class_names, scales=[32], flip=False, stage="cam", split=voc.split, dataset=voc.root
    ) as writer:
        for image_id in voc.ids:
            mask = voc.load_mask(image_id)
            classes = voc.labels(image_id)
            writer.add(image_id, classes, np.stack([(mask == c).astype(np.float32) for c in classes]))
    return path


def test_eval_maps_wrong_size_saliency_named(ds, tmp_path, capsys):
    voc = VOCDataset(ds, "train")
    store = _store_from_masks(voc, tmp_path / "train.h5")
    sal = voc.saliency_path(voc.ids[1])
    Image.new("L", (20, 16)).save(sal)
    assert main(["eval-maps", str(store), "--dataset", str(ds)]) == 2
    err = capsys.readouterr().err
    assert str(sal) in err and "16x20" in err


def test_segmenter_label_out_of_range_named(ds, tmp_path):
    """Label 37 in a pseudo label: IndexError on CPU, or nothing at all when the crop missed it."""
    from drs.config.settings import SegmenterSettings
    from drs.data.datasets import SegmentationSet

    voc = VOCDataset(ds, "train")
    labels = tmp_path / "labels"
    labels.mkdir()
    for image_id in voc.ids:
        save_label_png(labels / f"{image_id}.png", voc.load_mask(image_id))
    bad = voc.load_mask(voc.ids[2])
    bad[0, 0] = 37  # one corner pixel: a small crop mostly misses it
    save_label_png(labels / f"{voc.ids[2]}.png", bad)
    settings = SegmenterSettings.from_dict({"crop_size": 8, "scale_range": [1.0, 1.0]})
    data = SegmentationSet(voc, labels, settings)
    for index in (0, 1):
        data[index]
    with pytest.raises(UserError, match=rf"{voc.ids[2]}\.png: label value\(s\) \[37\]"):
        data[2]
    gt = SegmentationSet(VOCDataset(ds, "train"), None, settings)
    save_label_png(voc.mask_path(voc.ids[3]), bad)
    with pytest.raises(UserError, match=rf"{voc.ids[3]}\.png: label value\(s\) \[37\]"):
        gt[3]


def _tampered(checkpoint: Path, tmp_path: Path, change) -> Path:
    import torch

    data = torch.load(checkpoint, weights_only=True)
    change(data)
    out = tmp_path / "model.pt"
    torch.save(data, out)
    return out


def test_checkpoint_missing_key_named(checkpoint, tmp_path):
    from drs.store.model_files import load_classifier

    def drop(data):
        key = next(k for k in data["state_dict"] if k.endswith("weight"))
        del data["state_dict"][key]
        drop.key = key

    bad = _tampered(checkpoint, tmp_path, drop)
    with pytest.raises(UserError, match=rf"{bad}: .*missing.*'{drop.key}'"):
        load_classifier(bad)


def test_checkpoint_unexpected_key_named(checkpoint, tmp_path):
    from drs.store.model_files import load_classifier

    bad = _tampered(
        checkpoint, tmp_path, lambda d: d["state_dict"].update({"extra.weight": d["state_dict"]["classifier.weight"]})
    )
    with pytest.raises(UserError, match=rf"{bad}: .*unexpected.*'extra.weight'"):
        load_classifier(bad)


def test_checkpoint_of_another_width_named(checkpoint, tmp_path):
    from drs.store.model_files import load_classifier

    bad = _tampered(checkpoint, tmp_path, lambda d: d["model_config"].update(width=0.25))
    with pytest.raises(UserError, match=rf"{bad}: state dict key 'backbone\.0\.weight' has shape"):
        load_classifier(bad)


def test_checkpoint_without_model_config_named(checkpoint, tmp_path):
    from drs.store.model_files import load_classifier

    bad = _tampered(checkpoint, tmp_path, lambda d: d.pop("model_config"))
    with pytest.raises(UserError, match=rf"{bad}: .*'model_config'"):
        load_classifier(bad)


def test_results_dir_that_is_a_file(tmp_path):
    import copy

    import yaml

    from drs.config.workflow import check_config
    from helpers import REPO

    default = yaml.safe_load((REPO / "config.yaml").read_text())

    def with_changes(**changes):
        return {**copy.deepcopy(default), **changes}

    (tmp_path / "results").write_text("")
    with pytest.raises(UserError, match="config key 'results_dir': .*not a folder"):
        check_config(with_changes(results_dir=str(tmp_path / "results")))
    (tmp_path / "data").write_text("")
    with pytest.raises(UserError, match="config key 'dataset_dir': .*not a folder"):
        check_config(with_changes(dataset="folder", dataset_dir=str(tmp_path / "data")))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": "2"}, r"'classifier\.epochs': expected an integer, got str '2'"),
        ({"batch_size": 0}, r"'classifier\.batch_size': must be at least 1, got 0"),
        ({"epochs": 0}, r"'classifier\.epochs': must be at least 1"),
        ({"batch_size": True}, r"'classifier\.batch_size': expected an integer, got bool"),
        ({"lr": "0.1"}, r"'classifier\.lr': expected a number"),
        ({"lr": 0}, r"'classifier\.lr': must be above 0"),
        ({"batch_norm": 1}, r"'classifier\.batch_norm': expected true or false, got int"),
        ({"lr_decay_epochs": [5, "x"]}, r"'classifier\.lr_decay_epochs': expected a list of integers"),
        ({"lr_decay_epochs": 5}, r"'classifier\.lr_decay_epochs': expected a list of integers"),
        ({"pretrained": None}, r"'classifier\.pretrained': expected a string"),
        ({"width": -1}, r"'classifier\.width': must be above 0"),
        ({"num_workers": -1}, r"'classifier\.num_workers': must be at least 0"),
    ],
)
def test_settings_types_and_ranges(values, message):
    from drs.config.settings import ClassifierSettings

    with pytest.raises(UserError, match=message):
        ClassifierSettings.from_dict(values)


def test_settings_accepts_int_for_float():
    from drs.config.settings import ClassifierSettings, SegmenterSettings

    assert ClassifierSettings.from_dict({"lr": 1, "epochs": 2}).lr == 1
    with pytest.raises(UserError, match=r"'segmenter\.scale_range': expected a list of numbers"):
        SegmenterSettings.from_dict({"scale_range": [0.5, "2"]})


def test_train_classifier_settings_string_epochs(dataset, tmp_path, capsys):
    settings = json.dumps({**CLASSIFIER, "epochs": "2"})
    rc = main(["train-classifier", "--dataset", str(dataset), "--out", str(tmp_path / "c"), "--settings", settings])
    assert rc == 2
    assert "'classifier.epochs': expected an integer" in capsys.readouterr().err
    assert not (tmp_path / "c" / "model.pt").exists()


def test_extract_scales_must_be_positive(dataset, checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "extract-maps",
                "--model",
                str(checkpoint),
                "--dataset",
                str(dataset),
                "--out",
                str(tmp_path / "m.h5"),
                "--scales",
                "0",
            ]
        )
    assert stop.value.code == 2
    assert "--scales: must be a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    from drs.config.workflow import load_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: synthetic\nexperiments:\n  drs: {drs: learnable\n  cam: [\n")
    with pytest.raises(UserError, match=rf"{bad}:\d+:\d+: not valid YAML"):
        load_yaml(bad)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="list.yaml: expected a mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_workflow_names_yaml_error_of_default_config(tmp_path):
    """The Snakefile's own config.yaml is loaded by the Snakefile: its syntax error names file and line."""
    import subprocess

    from helpers import BIN, REPO

    work = tmp_path / "wf"
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "tests"))
    (work / "config.yaml").write_text("dataset: synthetic\nexperiments: {drs: {drs: learnable}\nmain_experiment: drs\n")
    result = subprocess.run([str(BIN / "snakemake"), "-n"], cwd=work, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config.yaml:3:" in output and "not valid YAML" in output, output[-2000:]


# -- defect 11: bench checks the classes before the forward pass --------------------------------
def test_bench_maps_checks_classes_first(ds, checkpoint, monkeypatch):
    import drs.bench.maps
    from drs.bench.maps import bench_maps

    names = (ds / "class_names.txt").read_text().split()
    (ds / "class_names.txt").write_text("\n".join([*names[:-1], "other"]) + "\n")

    def no_forward(*args, **kwargs):
        raise AssertionError("the forward pass ran before the class check")

    monkeypatch.setattr(drs.bench.maps, "forward_scales", no_forward)
    with pytest.raises(UserError, match=rf"{checkpoint}: trained on classes"):
        bench_maps(checkpoint, ds, "train", scales=(32,), images=2, batch_size=2, repeats=1)


def test_score_labels_out_of_range_label_named(ds, tmp_path, capsys):
    voc = VOCDataset(ds, "val")
    labels = tmp_path / "labels"
    labels.mkdir()
    for image_id in voc.ids:
        label = voc.load_mask(image_id)
        label[0, 0] = 37
        save_label_png(labels / f"{image_id}.png", label)
    assert main(["score-labels", str(labels), "--dataset", str(ds), "--split", "val"]) == 2
    assert f"{labels / voc.ids[0]}.png: label value(s) [37]" in capsys.readouterr().err


def test_checkpoint_without_class_names_named(checkpoint, tmp_path):
    from drs.store.model_files import load_classifier

    bad = _tampered(checkpoint, tmp_path, lambda d: d.pop("class_names"))
    with pytest.raises(UserError, match=rf"{bad}: .*'class_names'"):
        load_classifier(bad)


@pytest.mark.parametrize(
    "argv, option",
    [
        (["bench", "maps", "--model", "m.pt", "--dataset", "ds", "--scales", "256", "0"], "--scales"),
        (["bench", "maps", "--model", "m.pt", "--dataset", "ds", "--batch-size", "0"], "--batch-size"),
        (["extract-maps", "--model", "m.pt", "--dataset", "ds", "--out", "o.h5", "--scales", "x"], "--scales"),
        (["check-dataset", "ds", "--workers", "-1"], "--workers"),
    ],
)
def test_numeric_options_checked_when_parsed(argv, option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert f"argument {option}: must be a positive integer" in capsys.readouterr().err


def test_evaluate_scales_above_zero(capsys):
    from drs.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["evaluate", "--scales", "1.0", "0"])
    assert "argument --scales: must be a number above 0, got '0'" in capsys.readouterr().err


def test_refiner_names_maps_of_another_size(ds, tmp_path):
    """The refiner's transforms resize image and maps alike: a store of another size went unnoticed."""
    from drs.data.datasets import RefineSet
    from drs.store.writer import MapStoreWriter

    voc = VOCDataset(ds, "train")
    store = tmp_path / "train.h5"
    with MapStoreWriter(
        store, class_names=voc.class_names, scales=[32], flip=False, stage="cam", split="train", dataset=ds
    ) as writer:
        for n, image_id in enumerate(voc.ids):
            classes = voc.labels(image_id)
            size = (40, 40) if n == 1 else voc.load_mask(image_id).shape
            writer.add(image_id, classes, np.ones((len(classes), *size), np.float32))
    data = RefineSet(voc, store, input_size=48, crop_size=40)
    data[0]
    with pytest.raises(UserError, match=rf"{store}: maps of '{voc.ids[1]}' are 40x40 but its image .* is 48x48"):
        data[1]


def test_pseudo_labels_refuse_store_id_that_is_no_file_name(ds, tmp_path):
    from drs.config.settings import PseudoLabelSettings
    from drs.labels.writer import generate_pseudo_labels
    from drs.store.writer import MapStoreWriter

    voc = VOCDataset(ds, "train")
    store = tmp_path / "train.h5"
    with MapStoreWriter(
        store, class_names=voc.class_names, scales=[32], flip=False, stage="cam", split="train", dataset=ds
    ) as writer:
        writer.add(".hidden", [1], np.ones((1, 48, 48), np.float32))
    with pytest.raises(UserError, match=rf"{store}: id '.hidden' starts with a dot"):
        generate_pseudo_labels(store, tmp_path / "labels", ds, PseudoLabelSettings(saliency="none"), workers=1)
    assert not (tmp_path / "labels").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "expected a JSON object of metrics"),
        ('{"miou": 0.5}', "no 'coverage' mapping"),
        ('{"coverage": {"part": "high"}}', "part coverage must be a number or null, got 'high'"),
    ],
)
def test_compare_names_bad_metrics(tmp_path, capsys, content, message):
    metrics = tmp_path / "cam.json"
    metrics.write_text(content)
    assert main(["compare", "--runs", f"cam={metrics}", "--out", str(tmp_path / "table.md")]) == 2
    assert f"{metrics}: {message}" in capsys.readouterr().err


SMALL = {"image_size": 32, "object_size": [12, 16]}  # fast to make, should the check be missing


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"num_val": -1, "num_train": 1, **SMALL}, "'synthetic.num_val': need at least 1 image, got -1"),
        ({"num_train": 0, "num_val": 1, **SMALL}, "'synthetic.num_train': need at least 1 image, got 0"),
        ({"image_size": "64"}, "'synthetic.image_size': expected an integer, got str '64'"),
        ({"saliency": {"blur_sigma": "x"}}, "'synthetic.saliency.blur_sigma': expected a number"),
        ({"object_size": [20]}, "'synthetic.object_size': expected a list of 2 integers"),
    ],
)
def test_synth_spec_types_and_counts(tmp_path, capsys, spec, message):
    assert main(["synth", str(tmp_path / "s"), "--spec", json.dumps(spec)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


class _BadLabels:
    """A dataset whose item 1 is bad input, as a label PNG with value 37 is."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        if index == 1:
            raise UserError("labels/b.png: label value(s) [37] out of range")
        return index


def test_user_error_from_a_data_loading_worker_is_one_line():
    """PyTorch re-raises a worker's UserError with the worker's traceback as its message."""
    from torch.utils.data import DataLoader

    from drs.errors import user_message

    with pytest.raises(UserError) as info:
        list(DataLoader(_BadLabels(), batch_size=1, num_workers=1))
    assert "Traceback" in str(info.value)
    assert user_message(info.value) == "labels/b.png: label value(s) [37] out of range"
    assert user_message(UserError("a: b")) == "a: b"


def test_evaluate_writes_nothing_outside_its_predictions(ds, tmp_path, capsys):
    """The issue's reproduction: `../../x` in val.txt (x.jpg and x.png present) made `drs evaluate`
    write x.png two folders above its predictions."""
    from drs.config.settings import SegmenterSettings
    from drs.store.model_files import save_model
    from drs.training.segmenter import build_segmenter

    voc = VOCDataset(ds, "val")
    settings = SegmenterSettings.from_dict({"backbone": "resnet18", "width": 0.125, "pretrained": "none"})
    model = build_segmenter(voc.num_classes, settings)
    record = {
        "kind": "segmenter",
        "model_config": model.config,
        "settings": {},
        "class_names": list(voc.class_names),
        "dataset": str(ds),
        "split": "train",
        "labels": "ground-truth",
        "supervision": "full",
    }
    (tmp_path / "seg").mkdir()
    checkpoint = save_model(model, record, tmp_path / "seg")
    # <ds>/JPEGImages/../../x.jpg and <ds>/SegmentationClass/../../x.png: x.* beside <ds>
    shutil.copy(voc.image_path(voc.ids[0]), tmp_path / "x.jpg")
    shutil.copy(voc.mask_path(voc.ids[0]), tmp_path / "x.png")
    with split_file(ds, "val").open("a") as f:
        f.write("../../x\n")
    out = tmp_path / "run" / "eval"
    out.mkdir(parents=True)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    rc = main(
        [
            "evaluate",
            "--model",
            str(checkpoint),
            "--dataset",
            str(ds),
            "--split",
            "val",
            "--predictions",
            str(out / "predictions"),
            "--out",
            str(out / "segmentation.json"),
        ]
    )
    assert rc == 2
    assert "val.txt:3: id '../../x' contains a path separator" in capsys.readouterr().err
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_check_config_command(tmp_path, capsys):
    """A YAML error in a --configfile is reported by Snakemake before the Snakefile runs, without
    file or line: `drs check-config` names both, and makes the workflow's other checks."""
    from helpers import REPO

    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: synthetic\nexperiments:\n  drs: {drs: learnable\n  cam: [\n")
    assert main(["check-config", str(bad)]) == 2
    assert f"{bad}:4:6: not valid YAML: expected ',' or '}}'" in capsys.readouterr().err
    assert main(["check-config", str(REPO / "config" / "voc2012.yaml")]) == 0
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text((REPO / "config.yaml").read_text() + "\nepochs: 3\n")
    assert main(["check-config", str(unknown)]) == 2
    assert "config key 'epochs': unknown key" in capsys.readouterr().err


def test_train_classifier_network_shape_named(dataset, tmp_path, capsys):
    settings = json.dumps({**CLASSIFIER, "stages": 9})
    rc = main(["train-classifier", "--dataset", str(dataset), "--out", str(tmp_path / "c"), "--settings", settings])
    assert rc == 2
    assert "classifier settings: stages 9: expected one of [3, 4, 5]" in capsys.readouterr().err
