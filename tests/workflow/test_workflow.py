"""The Snakemake workflow: lint and format clean, dry runs, and a tiny run end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest
import torch

from drs.store.reader import MapStore
from helpers import BIN, REPO, TINY_CONFIG, snakemake


def test_snakemake_lint_is_clean():
    result = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_dry_run_default_config_shows_data_stage_and_targets(workdir):
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for job in ("synthesize_dataset", "check_dataset", "all"):
        assert f"rule {job}:" in out or f"localrule {job}:" in out, job
    result = snakemake(workdir, "-n", "data", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode == 0 and "rule data:" in result.stdout + result.stderr

    # `all`: the main experiment, the fully supervised reference and, with report.baseline_in_all
    # (config.yaml's setting: the report shows CAM beside DRS), the CAM baseline
    def job_counts(*args, config=REPO / "config.yaml"):
        out = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", str(config), *args)
        assert out.returncode == 0, out.stderr
        return {w[0]: int(w[1]) for w in map(str.split, out.stdout.splitlines()) if len(w) == 2 and w[1].isdigit()}

    counts = job_counts()
    # the CAM baseline end to end (its refiner and DeepLabV3+ too), for the verdict at every stage
    assert counts["train_classifier"] == 2 and counts["train_segmenter"] == 3 and counts["summary"] == 1
    assert counts["train_refiner"] == 2 and counts["sweep_labels"] == 2
    without = workdir / "without_baseline.yaml"
    text = (REPO / "config.yaml").read_text()
    assert "baseline_in_all: true" in text
    without.write_text(text.replace("baseline_in_all: true", "baseline_in_all: false"))
    assert job_counts(config=without)["train_classifier"] == 1
    # `ablation`: every experiment end to end and the comparison (segmenters: cam, drs, drs_fixed,
    # fully_supervised, and DeepLab-V2 on drs's labels and on the ground truth)
    counts = job_counts("--", "ablation")
    assert counts["train_classifier"] == 3 and counts["train_segmenter"] == 6 and counts["ablation_summary"] == 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A complete run of the tiny config (its folder: tests that change it work on a copy)."""
    workdir = tmp_path_factory.mktemp("tiny") / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--cores", "2", "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def dry_run_jobs(workdir, config) -> dict[str, int]:
    """Rule -> number of jobs a dry run of ``config`` would run."""
    out = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    return {w[0]: int(w[1]) for w in map(str.split, out.stdout.splitlines()) if len(w) == 2 and w[1].isdigit()}


@pytest.mark.slow
def test_tiny_run_end_to_end_then_nothing_to_do(tiny_run, tmp_path):
    workdir = tiny_run
    report = json.loads((workdir / "results/data/dataset_check.json").read_text())
    assert report["ok"] and report["splits"]["train"] == 12 and report["splits"]["val"] == 6
    assert report["class_names"][0] == "background" and len(report["class_names"]) == 4
    for rule in ("synthesize_dataset", "check_dataset"):
        assert (workdir / f"results/logs/{rule}.log").stat().st_size > 0
    # synthesize_dataset is cacheable between workflows, and a cached rule has no benchmark
    assert (workdir / "results/benchmarks/check_dataset.tsv").exists()
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
    # stages 6 and 7: DeepLabV3+ on the pseudo labels and on the ground truth, evaluated on val
    for exp, supervision in (("drs", "image"), ("full", "full")):
        seg = json.loads((workdir / f"results/{exp}/metrics/segmentation.json").read_text())
        assert seg["split"] == "val" and seg["num_images"] == 6 and seg["supervision"] == supervision
        assert seg["multi_scale"] and seg["scales"] == [1.0, 1.25] and seg["flip"]
        assert len(seg["confusion_matrix"]) == 4 and sum(map(sum, seg["confusion_matrix"])) > 0
        assert len(list((workdir / f"results/{exp}/predictions/val").glob("*.png"))) == 6
    assert not (workdir / "results/full/classifier").exists()  # no classifier for the reference
    summary = (workdir / "results/summary.md").read_text()
    assert "fully supervised" in summary
    # the HTML report from the run's outputs
    html = snakemake(workdir, "--configfile", str(TINY_CONFIG), "--report", "report.html")
    assert html.returncode == 0, html.stdout + html.stderr
    assert (workdir / "report.html").stat().st_size > 100_000
    again = snakemake(workdir, "-n", "--configfile", str(TINY_CONFIG))
    assert "Nothing to be done" in again.stdout + again.stderr
    # a changed setting re-runs exactly the stages that depend on it (params are a rerun trigger):
    # the refiner's epochs: the refiner, its maps, the pseudo labels and what follows from them,
    # not the data, the classifier, its maps or the fully supervised reference
    config = tmp_path / "refiner_epochs.yaml"
    config.write_text(
        TINY_CONFIG.read_text().replace(
            "  epochs: 2\n  batch_size: 4\n  lr: 0.001\n", "  epochs: 3\n  batch_size: 4\n  lr: 0.001\n"
        )
    )
    assert config.read_text() != TINY_CONFIG.read_text()
    assert dry_run_jobs(workdir, config) == REFINER_DEPENDENTS
    # a changed generator setting re-runs the data stage and everything after it: every job of a
    # fresh run
    config.write_text(TINY_CONFIG.read_text().replace("  num_train: 12\n", "  num_train: 10\n"))
    assert config.read_text() != TINY_CONFIG.read_text()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    everything = dry_run_jobs(fresh, TINY_CONFIG)
    assert everything["synthesize_dataset"] == 1 and everything["train_classifier"] == 2
    assert dry_run_jobs(workdir, config) == everything


# the refiner's settings are shared by DRS and the CAM baseline (both run end to end in `all`)
REFINER_DEPENDENTS = {
    "train_refiner": 2,
    "extract_refined_maps": 2,
    "pseudo_labels": 2,
    "sweep_labels": 2,
    "score_labels": 2,
    "train_segmenter": 2,
    "evaluate": 2,
    "summary": 1,
    "all": 1,
    "total": 16,
}
TRAINED_MODELS = (
    "drs/classifier",
    "cam/classifier",
    "drs/refiner",
    "cam/refiner",
    "drs/segmenter",
    "cam/segmenter",
    "full/segmenter",
)
METRICS = (
    "drs/metrics/cam.json",
    "cam/metrics/cam.json",
    "drs/metrics/refined.json",
    "drs/metrics/segmentation.json",
    "cam/metrics/refined.json",
    "cam/metrics/segmentation.json",
    "full/metrics/segmentation.json",
)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_changed_synthetic_seed_retrains_every_stage(tiny_run, tmp_path):
    """After a complete run, another synthetic seed regenerates the data and Snakemake reruns the
    trainers: each must train afresh (they used to resume "after epoch 2 of 2" from last.pt and
    hand back the old model.pt), and the metrics must move."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)  # times kept: the copy is up to date
    unchanged = snakemake(workdir, "-n", "--configfile", str(TINY_CONFIG))
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr
    results = workdir / "results"
    models = {m: _sha256(results / m / "model.pt") for m in TRAINED_MODELS}
    metrics = {m: json.loads((results / m).read_text()) for m in METRICS}
    config = tmp_path / "seed2.yaml"
    config.write_text(TINY_CONFIG.read_text().replace("  seed: 1\n", "  seed: 2\n"))
    assert config.read_text() != TINY_CONFIG.read_text()
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    for model, before in models.items():
        exp, stage = model.split("/")
        log = (results / "logs" / f"train_{stage}" / f"{exp}.log").read_text()
        assert "after epoch" not in log and "starting afresh: the training data changed" in log, (model, log)
        assert _sha256(results / model / "model.pt") != before, model
    for name, before in metrics.items():
        after = json.loads((results / name).read_text())
        assert (after["miou"], after["per_class_iou"]) != (before["miou"], before["per_class_iou"]), name


def test_existing_folder_dataset_is_used_as_is(workdir):
    """dataset: folder reads any VOC-layout folder; no data rule runs."""
    from drs.data.synth import generate
    from drs.data.synth_spec import SynthSpec

    folder = generate(
        workdir / "my_voc", SynthSpec(num_train=4, num_val=2, image_size=48, object_size=(20, 30)), workers=1
    )
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

    folder = generate(
        workdir / "broken", SynthSpec(num_train=4, num_val=2, image_size=48, object_size=(20, 30)), workers=1
    )
    (folder / "JPEGImages/train_00002.jpg").unlink()
    config = workdir / "folder.yaml"
    config.write_text(
        f"dataset: folder\ndataset_dir: {folder}\nexperiments: {{cam: {{drs: none}}}}\nmain_experiment: cam\n"
    )
    result = snakemake(workdir, "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    assert not (workdir / "results/data/dataset_check.json").exists()
    assert "train_00002.jpg: image missing" in (workdir / "results/logs/check_dataset.log").read_text()


@pytest.mark.slow
def test_cams_target_compares_experiments(workdir):
    """`cams` builds every experiment's cam.json and the comparison table and picture."""
    result = snakemake(workdir, "--cores", "2", "--configfile", str(TINY_CONFIG), "--", "cams")
    assert result.returncode == 0, result.stdout + result.stderr
    table = (workdir / "results/drs_vs_cam.md").read_text()
    assert "| drs | 1 |" in table and "| cam | 1 |" in table
    from PIL import Image

    with Image.open(workdir / "results/drs_vs_cam.png") as picture:
        assert picture.width == 4 * 64  # image, ground truth, one map per variant
