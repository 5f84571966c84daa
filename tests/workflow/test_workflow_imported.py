"""Experiments from released assets: classifier_weights / refiner_weights (checkpoints in the
reference's layout, made here at the synthetic set's class count) replace training; a
pseudo_labels_dir replaces stages 2-5. The workflow runs only the stages such experiments need."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from helpers import TINY_CONFIG, snakemake
from test_import_weights import reference_state


@pytest.fixture
def config(workdir):
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    classes = cfg["synthetic"]["num_classes"]
    torch.save({"model": reference_state(classes, learnable=True, width=0.125, seed=1)}, workdir / "cls.pth")
    torch.save({"model": reference_state(classes, learnable=False, width=0.125, seed=2)}, workdir / "ref.pth")
    cfg["experiments"] = {
        "imp": {"drs": "learnable", "classifier_weights": "cls.pth", "refiner_weights": "ref.pth"},
        "lab": {"pseudo_labels_dir": "results/imp/pseudo_labels"},
        "full": {"supervision": "full"},
    }
    cfg["main_experiment"] = "imp"
    path = workdir / "imported.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


TARGETS = [
    "results/imp/metrics/cam.json",
    "results/imp/metrics/refined.json",
    "results/imp/metrics/segmentation.json",
    "results/lab/metrics/segmentation.json",
]


def planned_rules(workdir, config, *targets):
    out = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", str(config), "--", *targets)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow
def test_imported_experiments_skip_training(workdir, config):
    plan = planned_rules(workdir, config, *TARGETS)
    assert "import_classifier" in plan and "import_refiner" in plan
    assert "train_classifier" not in plan and "train_refiner" not in plan
    assert "train_segmenter" in plan and "pseudo_labels" in plan
    # DeepLabV3+ on given labels alone: no classifier, maps or refiner at all
    alone = planned_rules(workdir, config, "results/lab/segmenter/model.pt")
    # the given folder here is imp's labels, built first: from the imported refiner alone
    assert "import_refiner" in alone and "pseudo_labels" in alone
    assert "import_classifier" not in alone and "extract_maps" not in alone.replace("extract_refined_maps", "")
    cfg = yaml.safe_load(config.read_text())
    (workdir / "labels").mkdir()
    cfg["experiments"]["lab"]["pseudo_labels_dir"] = "labels"
    config.write_text(yaml.safe_dump(cfg))
    alone = planned_rules(workdir, config, "results/lab/segmenter/model.pt")
    assert "train_segmenter" in alone
    assert not any(r in alone for r in ("classifier", "refiner", "extract_maps", "pseudo_labels"))


def test_bad_asset_experiments_are_refused(workdir, config):
    cfg = yaml.safe_load(config.read_text())
    cfg["experiments"]["lab"]["drs"] = "learnable"
    config.write_text(yaml.safe_dump(cfg))
    out = snakemake(workdir, "-n", "--configfile", str(config))
    assert out.returncode != 0 and "experiments.lab.drs': not used with pseudo_labels_dir" in out.stdout + out.stderr


@pytest.mark.slow
def test_imported_weights_run_to_deeplab(workdir, config):
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config), "--", *TARGETS)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(workdir / "results/imp/classifier/model.pt", weights_only=True)
    assert len(checkpoint["source_sha256"]) == 64 and checkpoint["kind"] == "classifier"
    assert (
        not (workdir / "results/logs/train_classifier").exists()
        and not (workdir / "results/logs/train_refiner").exists()
    )
    for target in TARGETS:
        metrics = json.loads((workdir / target).read_text())
        assert 0 <= metrics["miou"] <= 1
