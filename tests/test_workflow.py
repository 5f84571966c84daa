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
    # `all`: the main experiment and the fully supervised reference (and the CAM baseline with
    # report.baseline_in_all, which config.yaml leaves off to keep `make run` short)
    def job_counts(*args, config=REPO / "config.yaml"):
        out = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", str(config), *args)
        assert out.returncode == 0, out.stderr
        return {w[0]: int(w[1]) for w in map(str.split, out.stdout.splitlines()) if len(w) == 2 and w[1].isdigit()}

    counts = job_counts()
    assert counts["train_classifier"] == 1 and counts["train_segmenter"] == 2 and counts["summary"] == 1
    with_baseline = workdir / "with_baseline.yaml"
    with_baseline.write_text((REPO / "config.yaml").read_text().replace("baseline_in_all: false", "baseline_in_all: true"))
    assert job_counts(config=with_baseline)["train_classifier"] == 2
    # `ablation`: every experiment end to end and the comparison
    counts = job_counts("--", "ablation")
    assert counts["train_classifier"] == 3 and counts["train_segmenter"] == 4 and counts["ablation_summary"] == 1


def test_tiny_run_end_to_end_then_nothing_to_do(workdir):
    result = snakemake(workdir, "--cores", "2", "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
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
