"""config/rehearsal.yaml, the full-size rehearsal (docs/benchmarks.md: "Full-size rehearsal on the
CPU"): it plans every stage, both segmenter architectures included, with the real networks at the
real sizes, and (slow) runs it."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

import drs
from helpers import REPO, snakemake

REHEARSAL = REPO / "config" / "rehearsal.yaml"


def header_command() -> list[str]:
    """The command line the header comment says to run, as words."""
    header = REHEARSAL.read_text().split("\ndataset:")[0]
    lines = [
        line.lstrip("# ").strip() for line in header.splitlines() if line.lstrip("# ").startswith("snakemake --cores")
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def test_header_command_is_the_plain_run():
    """The plain command: rule all, which here covers every stage and both segmenters."""
    assert header_command() == ["snakemake", "--cores", "all", "--configfile", "config/rehearsal.yaml"]
    assert "pretrained: none" in REHEARSAL.read_text().split("\ndataset:")[0]


def test_settings_are_full_size():
    config = yaml.safe_load(REHEARSAL.read_text())
    synth = config["synthetic"]
    assert (synth["width"], synth["height"]) == (500, 375) and synth["num_classes"] == 20
    for section in ("classifier", "refiner"):
        c = config[section]
        assert (c["width"], c["stages"], c["batch_norm"], c["crop_size"]) == (1.0, 5, False, 320), section
        assert c["pretrained"] == "none"
    assert config["classifier"]["input_size"] == 384
    assert config["maps"]["scales"] == [256, 320, 384]
    seg, v2 = config["segmenter"], config["deeplabv2"]
    assert (seg["backbone"], seg["width"], seg["output_stride"], seg["crop_size"]) == ("resnet101", 1.0, 16, 513)
    assert (v2["backbone"], v2["width"], v2["crop_size"]) == ("resnet101", 1.0, 321)
    assert seg["pretrained"] == v2["pretrained"] == "none"
    assert config["evaluation"]["crf"] is True


def test_rehearsal_plans_every_stage(workdir):
    # the header's own command, planned (-n) from a copy of the workflow
    words = header_command()[3:]
    words[words.index("config/rehearsal.yaml")] = str(REHEARSAL)
    run = snakemake(workdir, "-n", "-p", *words)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.MULTILINE)}
    expected = {
        "synthesize_dataset": 1,
        "check_dataset": 1,
        "train_classifier": 1,
        "extract_maps": 1,
        "eval_maps": 1,
        "train_refiner": 1,
        "extract_refined_maps": 1,
        "pseudo_labels": 1,
        "score_labels": 1,
        "train_segmenter": 2,
        "evaluate": 2,
        "summary": 1,
        "deeplabv2_summary": 1,
    }
    assert {rule: counts.get(rule) for rule in expected} == expected
    # both architectures: DeepLabV3+ for drs, DeepLab-V2 on drs's pseudo labels
    assert "--architecture deeplabv3plus" in out and "--architecture deeplabv2" in out
    assert "results/rehearsal/drs_deeplabv2/segmenter/model.pt" in out
    # no download: every network starts from random weights
    assert "download_weights" not in counts and "download_voc2012" not in counts


@pytest.mark.slow
def test_rehearsal_runs_end_to_end(workdir, capsys):
    """The header's command, run: every stage at full size (about 4.5 minutes on 2 cores), both
    segmenters evaluated on the 500 x 375 images, every job's peak memory under 8 GB (printed)."""
    words = header_command()[1:]
    words[words.index("all")] = "2"
    words[words.index("config/rehearsal.yaml")] = str(REHEARSAL)
    run = snakemake(workdir, *words, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = workdir / "results" / "rehearsal"
    assert (results / "summary.md").exists() and (results / "deeplabv2" / "summary.md").exists()
    with drs.open_store(results / "drs" / "maps" / "train_refined.h5") as store:
        assert len(store.ids) == 24 and len(store.class_names) == 21
        assert store.read(store.ids[0]).maps.shape[1:] == (375, 500)
    for exp, name in (("drs", "DeepLabV3+ ResNet-101"), ("drs_deeplabv2", "DeepLab-V2 ResNet-101")):
        seg = json.loads((results / exp / "metrics" / "segmentation.json").read_text())
        assert seg["network"]["name"].startswith(name) and seg["network"]["width"] == 1.0, seg["network"]
        assert seg["num_images"] == 8 and "crf" in seg and seg["protocol"]["name"] == "reference"
        model, _, _ = drs.load_model(results / exp / "segmenter" / "model.pt")
        assert sum(p.numel() for p in model.parameters()) > 40_000_000, exp
    peaks = {}
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        header, values = tsv.read_text().splitlines()[:2]
        row = dict(zip(header.split("\t"), values.split("\t"), strict=True))
        peaks[str(tsv.relative_to(results / "benchmarks"))] = (float(row["s"]), float(row["max_rss"]))
    assert {"train_classifier/drs.tsv", "train_segmenter/drs_deeplabv2.tsv", "evaluate/drs.tsv"} <= set(peaks)
    with capsys.disabled():
        print("\nrehearsal, per rule: wall s, peak MB")
        for rule, (seconds, mb) in peaks.items():
            print(f"  {rule:45s} {seconds:8.1f} {mb:8.0f}")
    assert all(mb < 8000 for _, mb in peaks.values()), peaks
