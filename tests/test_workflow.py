"""The Snakemake workflow: lint and format clean, dry runs, and a tiny run end to end."""

from __future__ import annotations

import json
import subprocess

import torch

from drs.maps import MapStore

from conftest import BIN, REPO, TINY_CONFIG, snakemake


def test_snakemake_lint_is_clean():
    result = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_default_config_shows_data_stage_and_targets(workdir):
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for job in ("synthesize_dataset", "check_dataset", "all"):
        assert f"rule {job}:" in out or f"localrule {job}:" in out, job
    result = snakemake(workdir, "-n", "data", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode == 0 and "rule data:" in result.stdout + result.stderr


def test_tiny_run_end_to_end_then_nothing_to_do(workdir):
    result = snakemake(workdir, "--cores", "2", "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((workdir / "results/data/dataset_check.json").read_text())
    assert report["ok"] and report["splits"]["train"] == 12 and report["splits"]["val"] == 6
    assert report["class_names"][0] == "background" and len(report["class_names"]) == 4
    for rule in ("synthesize_dataset", "check_dataset"):
        assert (workdir / f"results/logs/{rule}.log").stat().st_size > 0
        assert (workdir / f"results/benchmarks/{rule}.tsv").exists()
    cam = json.loads((workdir / "results/drs/metrics/cam.json").read_text())
    assert {"miou", "pixel_accuracy", "per_class_iou", "split", "num_images"} <= set(cam)
    assert cam["num_images"] == 12 and all(v is None or 0 <= v <= 1 for v in cam["per_class_iou"].values())
    assert "state_dict" in torch.load(workdir / "results/drs/classifier/model.pt", weights_only=True)
    with MapStore(workdir / "results/drs/maps/train.h5") as store:
        assert len(store) == 12 and store.attrs["checkpoint_sha256"]
    assert "img/s" in (workdir / "results/logs/train_classifier/drs.log").read_text()
    with MapStore(workdir / "results/drs/maps/train_refined.h5") as store:
        assert len(store) == 12 and store.stage == "refined"
    labels = sorted((workdir / "results/drs/pseudo_labels").glob("*.png"))
    assert len(labels) == 12
    refined = json.loads((workdir / "results/drs/metrics/refined.json").read_text())
    assert {"miou", "pixel_accuracy", "per_class_iou", "split", "num_images", "ignored_fraction"} <= set(refined)
    assert refined["num_images"] == 12 and 0 <= refined["ignored_fraction"] <= 1
    again = snakemake(workdir, "-n", "--configfile", str(TINY_CONFIG))
    assert "Nothing to be done" in again.stdout + again.stderr
    # a changed generator setting re-runs the data stage (params are a rerun trigger)
    changed = snakemake(workdir, "-n", "--configfile", str(TINY_CONFIG), "--config", "train_split=train")
    assert "Nothing to be done" in changed.stdout + changed.stderr
    rebuilt = snakemake(workdir, "-n", "--forcerun", "synthesize_dataset", "--configfile", str(TINY_CONFIG))
    assert "rule synthesize_dataset:" in rebuilt.stdout + rebuilt.stderr


def test_existing_folder_dataset_is_used_as_is(workdir):
    """dataset: folder reads any VOC-layout folder; no data rule runs."""
    from drs.data.synth import generate
    from drs.data.synth_spec import SynthSpec

    folder = generate(workdir / "my_voc", SynthSpec(num_train=4, num_val=2, image_size=48, object_size=(20, 30)), workers=1)
    config = workdir / "folder.yaml"
    config.write_text(
        f"dataset: folder\ndataset_dir: {folder}\nexperiments: {{cam: {{drs: none}}}}\nmain_experiment: cam\n"
    )
    result = snakemake(workdir, "--cores", "1", "--configfile", str(config), "--", "data")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "synthesize_dataset" not in out and "download_voc2012" not in out
    assert json.loads((workdir / "results/data/dataset_check.json").read_text())["splits"]["train"] == 4


def test_broken_dataset_fails_the_check_and_publishes_nothing(workdir):
    from drs.data.synth import generate
    from drs.data.synth_spec import SynthSpec

    folder = generate(workdir / "broken", SynthSpec(num_train=4, num_val=2, image_size=48, object_size=(20, 30)), workers=1)
    (folder / "JPEGImages/train_00002.jpg").unlink()
    config = workdir / "folder.yaml"
    config.write_text(f"dataset: folder\ndataset_dir: {folder}\nexperiments: {{cam: {{drs: none}}}}\nmain_experiment: cam\n")
    result = snakemake(workdir, "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    assert not (workdir / "results/data/dataset_check.json").exists()
    assert "train_00002.jpg: image missing" in (workdir / "results/logs/check_dataset.log").read_text()


def test_cams_target_compares_experiments(workdir):
    """`cams` builds every experiment's cam.json and the comparison table and picture."""
    result = snakemake(workdir, "--cores", "2", "--configfile", str(TINY_CONFIG), "--", "cams")
    assert result.returncode == 0, result.stdout + result.stderr
    table = (workdir / "results/drs_vs_cam.md").read_text()
    assert "| drs | 1 |" in table and "| cam | 1 |" in table
    from PIL import Image

    with Image.open(workdir / "results/drs_vs_cam.png") as picture:
        assert picture.width == 4 * 64  # image, ground truth, one map per variant
