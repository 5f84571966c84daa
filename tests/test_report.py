"""`drs report`: the comparison table, the weak/full ratio, the summary, the pictures, the errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drs.cli import main
from drs.errors import UserError
from drs.report.inputs import load_metrics
from drs.report.tables import comparison_rows, headline
from drs.report.write import headline_section, parse_histories, parse_metrics, write_report
from helpers import BIN, REPO

NAMES = ["background", "red", "lime", "cyan"]


def metrics(miou, split="train", num_images=12, **extra):
    per_class = {name: round(miou + 0.01 * (i - 1), 4) for i, name in enumerate(NAMES)}
    per_class["cyan"] = None  # a class absent from both ground truth and prediction
    return {
        "miou": miou,
        "pixel_accuracy": 0.9,
        "per_class_iou": per_class,
        "num_images": num_images,
        "split": split,
        "confusion_matrix": [[1, 0], [0, 1]],
        **extra,
    }


def segmentation(miou, supervision):
    return metrics(
        miou,
        split="val",
        num_images=6,
        stage="segmentation",
        supervision=supervision,
        class_names=NAMES,
        multi_scale=False,
    )


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def run_metrics(tmp_path):
    """A whole run's metrics files: CAM baseline, DRS (maps, refined, DeepLabV3+), fully supervised."""
    files = {
        ("cam", "cam"): write_json(tmp_path / "cam/metrics/cam.json", metrics(0.50, stage="cam")),
        ("drs", "cam"): write_json(tmp_path / "drs/metrics/cam.json", metrics(0.60, stage="cam")),
        ("drs", "refined"): write_json(tmp_path / "drs/metrics/refined.json", metrics(0.70)),
        ("drs", "segmentation"): write_json(tmp_path / "drs/metrics/segmentation.json", segmentation(0.66, "image")),
        ("full", "segmentation"): write_json(tmp_path / "full/metrics/segmentation.json", segmentation(0.80, "full")),
    }
    return files


LABELS = {"cam": "CAM", "drs": "DRS", "full": "fully supervised"}


def test_comparison_rows_order_labels_and_ratio(run_metrics):
    # rows come grouped by stage, whatever the order given; experiments in the order first named
    order = [("full", "segmentation"), ("cam", "cam"), ("drs", "segmentation"), ("drs", "refined"), ("drs", "cam")]
    rows = comparison_rows({key: load_metrics(run_metrics[key]) for key in order}, LABELS)
    assert [r.label for r in rows] == [
        "CAM",
        "DRS",
        "DRS + refinement",
        "DeepLabV3+ on DRS pseudo labels",
        "DeepLabV3+ fully supervised",
    ]
    assert [r.split for r in rows] == ["train", "train", "train", "val", "val"]
    weak, full = rows[3], rows[4]
    assert weak.ratio == pytest.approx(0.66 / 0.80) and full.reference and full.ratio is None
    assert all(r.ratio is None for r in rows[:3])
    lines = headline(rows, "drs", "cam")
    assert (
        lines[0] == "- DeepLabV3+ on DRS pseudo labels: 66.0% mIoU on val (6 images), "
        "82.5% of the fully supervised model's 80.0%."
    )
    assert "60.0% from the DRS maps (CAM: 50.0%), 70.0% after refinement" in lines[1]


def test_absent_inputs_leave_their_rows_out(run_metrics, tmp_path):
    only_pseudo = {key: run_metrics[key] for key in [("drs", "cam"), ("drs", "refined")]}
    summary = tmp_path / "out/summary.md"
    write_report(only_pseudo, tmp_path / "out/report", summary, labels=LABELS, main="drs")
    text = summary.read_text()
    assert "| DRS + refinement | drs |" in text and "DeepLabV3+" not in text and "| CAM |" not in text
    # DeepLabV3+ on pseudo labels without a fully supervised run: a row, but no ratio
    weak_only = {**only_pseudo, ("drs", "segmentation"): run_metrics[("drs", "segmentation")]}
    rows = comparison_rows({k: load_metrics(p) for k, p in weak_only.items()}, LABELS)
    assert rows[-1].label == "DeepLabV3+ on DRS pseudo labels" and rows[-1].ratio is None
    assert "of the fully supervised" not in headline(rows, "drs")[0]


def test_summary_and_report_files(run_metrics, tmp_path):
    out, summary = tmp_path / "report", tmp_path / "summary.md"
    written = write_report(run_metrics, out, summary, labels=LABELS, main="drs", baseline="cam")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "comparison.html",
        "experiment_cam.html",
        "experiment_drs.html",
        "experiment_full.html",
        "per_class_iou.png",
        "verdict.json",
    ]
    assert written["summary"] == summary
    text = summary.read_text()
    assert text.startswith("# DRS results\n\n## Headline\n")
    assert (
        "| DeepLabV3+ on DRS pseudo labels | drs | DeepLabV3+ trained on pseudo labels | val | 6 | 66.0 | 90.0 | "
        "66.0 | 90.0 | 0.0 | 82.5% |" in text
    )
    assert (
        "| DeepLabV3+ fully supervised | full | DeepLabV3+ trained on ground-truth masks | val | 6 | 80.0 | 90.0 | "
        "80.0 | 90.0 | 0.0 | reference |" in text
    )
    # per experiment: a column per stage and scoring it has, per-class IoU in %, an absent class as a dash
    assert (
        "### drs (DRS)\n\n| class | classifier maps (train), our scoring | refined maps (train), our scoring | "
        "DeepLabV3+ (val), either scoring (no ignored pixels) |" in text
    )
    assert "| red | 60.0 | 70.0 | 66.0 |" in text and "| cyan | – | – | – |" in text
    assert str(out / "comparison.html") in text and str(out / "per_class_iou.png") in text
    page = (out / "comparison.html").read_text()
    assert "<table>" in page and "82.5%" in page and "DeepLabV3+ fully supervised" in page
    with Image.open(out / "per_class_iou.png") as chart:
        assert chart.width > 600 and chart.height > 300
    assert not list(tmp_path.rglob("*.partial"))
    section = headline_section(summary)
    assert section.splitlines()[0].startswith("- DeepLabV3+ on DRS pseudo labels: 66.0% mIoU")
    assert ", our scoring: mIoU 60.0% from the DRS maps (CAM: 50.0%)" in section.splitlines()[1]
    assert section.splitlines()[2].startswith("- Verdict, DRS against CAM at the pseudo labels:")
    assert len(section.splitlines()) == 3


def test_corrupt_or_incomplete_metrics_name_the_file(tmp_path, capsys):
    bad = tmp_path / "drs/metrics/refined.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"miou": 0.5,')
    with pytest.raises(UserError, match=rf"{bad}: not valid JSON"):
        load_metrics(bad)
    code = main(["report", "--metrics", f"drs:refined={bad}", "--out-dir", str(tmp_path / "out")])
    assert code == 2 and str(bad) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    partial = write_json(tmp_path / "partial.json", {"miou": 0.5, "split": "train"})
    with pytest.raises(UserError, match=rf"{partial}: missing key\(s\) pixel_accuracy, per_class_iou, num_images"):
        load_metrics(partial)
    out_of_range = write_json(tmp_path / "pct.json", metrics(68.5))
    with pytest.raises(UserError, match=r"pct.json: miou must be a number in \[0, 1\]"):
        load_metrics(out_of_range)
    with pytest.raises(UserError, match=r"missing.json: metrics file not found"):
        load_metrics(tmp_path / "missing.json")
    capsys.readouterr()
    assert main(["report", "--metrics", f"drs:bogus={bad}", "--out-dir", str(tmp_path / "out")]) == 2
    assert "STAGE one of cam, refined, segmentation" in capsys.readouterr().err


# -- pictures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthetic dataset, two map stores, a refined store and pseudo labels (from the masks)."""
    from drs.data.synth import generate
    from drs.data.synth_spec import SynthSpec
    from drs.data.voc import VOCDataset, save_label_png
    from drs.store.writer import MapStoreWriter

    root = tmp_path_factory.mktemp("report")
    folder = generate(
        root / "data", SynthSpec(num_train=5, num_val=2, image_size=48, object_size=(20, 30), num_classes=3), workers=1
    )
    data = VOCDataset(folder, "train")
    stores = {}
    for name, blur in (("CAM", 0.3), ("DRS", 1.0), ("refined", 0.8)):
        path = root / f"{name}.h5"
        with MapStoreWriter(
            path, class_names=data.class_names, scales=[48], flip=False, stage=name, split="train", dataset=folder
        ) as writer:
            for image_id in data.ids[:4]:  # the fifth image is in no store: never drawn
                mask = data.load_mask(image_id)
                classes = data.labels(image_id)
                writer.add(image_id, classes, np.stack([(mask == c) * blur for c in classes]).astype(np.float32))
        stores[name] = path
    labels = root / "pseudo_labels"
    labels.mkdir()
    for image_id in data.ids:
        save_label_png(labels / f"{image_id}.png", data.load_mask(image_id))
    return {"dataset": folder, "stores": stores, "labels": labels, "data": data}


def fake_predictor(image):
    return (image.mean(axis=2) > 120).astype(np.uint8)


@pytest.mark.parametrize(
    ("parse", "flag", "good", "bad_stage"),
    [
        (parse_metrics, "--metrics", "drs:cam=m.json", "drs:classifier=m.json"),
        (parse_histories, "--history", "drs:classifier=h.csv", "drs:cam=h.csv"),
    ],
)
def test_experiment_stage_pairs_name_the_flag_and_the_fault(parse, flag, good, bad_stage):
    assert parse([good]) == {tuple(good.split("=")[0].split(":")): good.split("=")[1]}
    with pytest.raises(UserError, match=rf"^{flag}: expected EXP:STAGE=\w+ with STAGE one of .*, got drs:"):
        parse([bad_stage])
    with pytest.raises(UserError, match=rf"^{flag}: drs:\w+ given twice$"):
        parse([good, good])


def test_strip_figure_columns_size_and_colours(tiny_run):
    from drs.report.figures import GAP, StripSources, header, palette_array, pick_strip_ids, strip_figure
    from drs.store.reader import MapStore

    data = tiny_run["data"]
    opened = {name: MapStore(path) for name, path in tiny_run["stores"].items()}
    try:
        sources = StripSources(maps=opened, pseudo_labels=tiny_run["labels"], predictor=fake_predictor)
        assert sources.columns() == ["image", "ground truth", "CAM", "DRS", "refined", "pseudo label", "prediction"]
        ids = pick_strip_ids(data, sources, 3)
        assert len(ids) == 3 and set(ids) <= set(data.ids[:4])
        assert ids == sorted(ids, key=data.ids.index)
        covered = set().union(*(set(data.labels(i).tolist()) for i in ids))
        every = set().union(*(set(data.labels(i).tolist()) for i in data.ids[:4]))
        assert covered == every  # each class shown once before filling up
        box = 64
        picture = strip_figure(data, ids, sources, box=box)
    finally:
        for store in opened.values():
            store.close()
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[1] == 7 * box + 6 * GAP
    top = header(sources.columns(), box).shape[0]
    legend_height = picture.shape[0] - top - 3 * (box + GAP)
    assert 15 < legend_height < 100
    # each row's ground-truth panel holds exactly the palette colours of its mask's labels
    for row, image_id in enumerate(ids):
        y = top + row * (box + GAP)
        panel = picture[y : y + box, box + GAP : 2 * box + GAP]
        colours = {tuple(int(v) for v in c) for c in np.unique(panel.reshape(-1, 3), axis=0)}
        expected = {tuple(int(v) for v in palette_array()[i]) for i in np.unique(data.load_mask(image_id))}
        assert colours == expected, image_id


def test_cli_writes_strips_and_prints_the_headline(tiny_run, run_metrics, tmp_path, capsys):
    stores = [f"{name}={path}" for name, path in tiny_run["stores"].items()]
    out, summary = tmp_path / "report", tmp_path / "summary.md"
    args = ["report", "--metrics", *(f"{e}:{s}={p}" for (e, s), p in run_metrics.items())]
    args += ["--label", "cam=CAM", "drs=DRS", "full=fully supervised", "--main", "drs", "--baseline", "cam"]
    args += ["--strip-maps", *stores, "--pseudo-labels", str(tiny_run["labels"]), "--dataset", str(tiny_run["dataset"])]
    args += ["--num-strip-images", "2", "--panel-size", "48", "--out-dir", str(out), "--summary", str(summary)]
    assert main(args) == 0
    with Image.open(out / "strips.png") as strips:
        assert strips.width == 6 * 48 + 5 * 4  # no segmenter: no prediction column
    assert "strips.png" in summary.read_text()
    capsys.readouterr()
    assert main(["report", "--headline", str(summary)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("- DeepLabV3+ on DRS pseudo labels: 66.0% mIoU on val") and "## " not in printed
    # strips need the dataset; a missing pseudo label names its file
    assert main([*args[: args.index("--dataset")], "--out-dir", str(out)]) == 2
    missing = tmp_path / "labels"
    shutil.copytree(tiny_run["labels"], missing)
    first = sorted(missing.glob("*.png"))[0]
    first.unlink()
    broken = [*args]
    broken[broken.index(str(tiny_run["labels"]))] = str(missing)
    assert main(broken) == 0  # the automatic choice takes images every source can draw
    assert main([*broken, "--strip-ids", first.stem]) == 2  # an image asked for by name must be there
    assert f"{first}: pseudo label not found" in capsys.readouterr().err


def test_a_plan_writes_what_the_same_options_write(tiny_run, run_metrics, tmp_path):
    """--plan JSON (the workflow's one object) gives byte-identical files to the options it replaces."""
    plan = {
        "metrics": {f"{e}:{s}": str(p) for (e, s), p in run_metrics.items()},
        "labels": LABELS,
        "main": "drs",
        "baseline": "cam",
        "maps": {name: str(path) for name, path in tiny_run["stores"].items()},
        "pseudo_labels": str(tiny_run["labels"]),
        "segmenter": None,
        "dataset": str(tiny_run["dataset"]),
        "split": "train",
    }
    common = ["--num-strip-images", "2", "--panel-size", "32"]
    by_options = ["report", "--metrics", *(f"{k}={v}" for k, v in plan["metrics"].items())]
    by_options += ["--label", *(f"{k}={v}" for k, v in LABELS.items()), "--main", "drs", "--baseline", "cam"]
    by_options += [
        "--strip-maps",
        *(f"{k}={v}" for k, v in plan["maps"].items()),
        "--pseudo-labels",
        plan["pseudo_labels"],
    ]
    by_options += ["--dataset", plan["dataset"], "--split", "train"]
    assert main([*by_options, *common, "--out-dir", str(tmp_path / "a"), "--summary", str(tmp_path / "a.md")]) == 0
    by_plan = ["report", "--plan", json.dumps(plan), *common]
    assert main([*by_plan, "--out-dir", str(tmp_path / "b"), "--summary", str(tmp_path / "b.md")]) == 0
    written = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "b").iterdir()) and "strips.png" in written
    for name in written:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a.md").read_text().replace("/a/", "/b/") == (tmp_path / "b.md").read_text()


def test_a_bad_plan_names_its_fault(run_metrics, tmp_path, capsys):
    plan = {
        "metrics": {"drs:refined": str(run_metrics[("drs", "refined")])},
        "labels": {},
        "main": "drs",
        "baseline": None,
    }
    plan.update({"maps": {}, "pseudo_labels": None, "segmenter": None, "dataset": None, "split": "train"})
    out = ["--out-dir", str(tmp_path / "out")]
    assert main(["report", "--plan", json.dumps(plan), *out]) == 0
    assert main(["report", "--plan", json.dumps({**plan, "extra": 1}), *out]) == 2
    assert "--plan: unknown key(s) ['extra']" in capsys.readouterr().err
    assert main(["report", "--plan", json.dumps({k: v for k, v in plan.items() if k != "main"}), *out]) == 2
    assert "missing key(s) ['main']" in capsys.readouterr().err
    assert main(["report", "--plan", json.dumps({**plan, "metrics": {"drs:bogus": "x.json"}}), *out]) == 2
    assert "STAGE one of cam, refined, segmentation" in capsys.readouterr().err
    assert main(["report", "--plan", "{not json", *out]) == 2
    assert "--plan: not valid JSON" in capsys.readouterr().err
    assert main(["report", "--plan", json.dumps(plan), "--main", "cam", "--split", "val", *out]) == 2
    assert "--plan replaces --main, --split: give one or the other" in capsys.readouterr().err


def test_strips_with_a_real_segmenter(tiny_run, run_metrics, tmp_path):
    """The prediction column from a DeepLabV3+ checkpoint of drs train-segmenter, through Predictor."""
    from drs.config.settings import SegmenterSettings
    from drs.training.segmenter import train_segmenter

    settings = SegmenterSettings.from_dict(
        {"backbone": "resnet18", "width": 0.125, "pretrained": "none", "epochs": 1, "batch_size": 2, "crop_size": 32}
    )
    checkpoint = train_segmenter(tiny_run["dataset"], "train", None, tmp_path / "segmenter", settings)
    out = tmp_path / "report"
    args = ["report", "--metrics", f"drs:refined={run_metrics[('drs', 'refined')]}", "--out-dir", str(out)]
    args += ["--strip-maps", f"DRS={tiny_run['stores']['DRS']}", "--segmenter", str(checkpoint)]
    args += ["--dataset", str(tiny_run["dataset"]), "--num-strip-images", "2", "--panel-size", "40"]
    assert main(args) == 0
    with Image.open(out / "strips.png") as strips:
        assert strips.width == 4 * 40 + 3 * 4  # image, ground truth, DRS, prediction


# -- the report in a real browser ------------------------------------------------------------------
@pytest.mark.slow
def test_snakemake_report_renders_in_chromium(tiny_run, run_metrics, tmp_path):
    """`snakemake --report` of a rule that runs `drs report` (with the workflow's captions and
    categories), opened in headless Chromium by scripts/check_report.py. Without chromium: on CI
    (CI=true) or with DRS_REQUIRE_BROWSER=1 the script installs it with apt-get (about 2 minutes),
    elsewhere the test is skipped."""
    required = os.environ.get("CI") == "true" or os.environ.get("DRS_REQUIRE_BROWSER") == "1"
    if not shutil.which("chromium") and not required:
        pytest.skip("chromium not installed (apt-get install chromium; make check-report installs it)")
    stores = " ".join(f"{name}={path}" for name, path in tiny_run["stores"].items())
    metrics_args = " ".join(f"{e}:{s}={p}" for (e, s), p in run_metrics.items())
    captions = REPO / "workflow" / "report"
    (tmp_path / "Snakefile").write_text(
        f"""
rule summary:
    output:
        summary="results/summary.md",
        comparison=report(
            "results/report/comparison.html",
            caption="{captions}/comparison.rst",
            category="Comparison",
            labels={{"result": "table"}},
        ),
        chart=report(
            "results/report/per_class_iou.png",
            caption="{captions}/per_class_iou.rst",
            category="Comparison",
            labels={{"result": "chart"}},
        ),
        strips=report("results/report/strips.png", caption="{captions}/strips.rst", category="Pictures"),
    shell:
        "{sys.executable} -m drs report --metrics {metrics_args} --label cam=CAM drs=DRS 'full=fully supervised' "
        "--main drs --baseline cam --strip-maps {stores} --pseudo-labels {tiny_run["labels"]} "
        "--dataset {tiny_run["dataset"]} --panel-size 64 --out-dir results/report --summary {{output.summary}}"
"""
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    snakemake = [str(BIN / "snakemake"), "-s", str(tmp_path / "Snakefile"), "--directory", str(tmp_path)]
    run = subprocess.run(
        [*snakemake, "--cores", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    made = subprocess.run(
        [*snakemake, "--report", "report.html"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stdout + made.stderr
    check = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/check_report.py"),
            str(tmp_path / "report.html"),
            "--out",
            str(tmp_path / "shots"),
            *(["--install"] if required else []),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    shots = sorted(p.name for p in (tmp_path / "shots").glob("*.png"))
    assert shots == ["comparison.png", "landing.png", "strips.png"]


def test_coverage_is_printed_under_its_map_column_only(tiny_run):
    from drs.report.figures import BACKGROUND, GAP, coverage_footer, coverage_text

    assert coverage_text({"part": 0.999, "rest_of_object": 0.5571, "background": 0.171}) == [
        "part 1.00",
        "rest 0.56",
        "background 0.17",
    ]
    assert coverage_text({"background": 0.2}) == ["background 0.20"]  # no part masks: background only
    box = 96
    columns = ["image", "ground truth", "CAM", "DRS", "pseudo label"]
    footer = coverage_footer(columns, {"DRS": {"part": 0.98, "rest_of_object": 0.97, "background": 0.85}}, box)
    inked = (footer != np.array(BACKGROUND, dtype=np.uint8)).any(axis=2)
    span = lambda n: inked[:, n * (box + GAP) + 2 : n * (box + GAP) + box - 2]  # noqa: E731
    assert span(3)[footer.shape[0] // 3 :].any()  # DRS: its three lines
    assert not span(2).any() and not span(4).any()  # nothing under CAM or the pseudo labels


def test_store_coverage_from_eval_maps_and_score_labels_metrics(tmp_path):
    from drs.report.write import store_coverage

    cov = {"part": 0.9, "rest_of_object": 0.5, "background": 0.1}
    refined_cov = {"part": 0.95, "rest_of_object": 0.9, "background": 0.3}
    cam = write_json(tmp_path / "cam.json", metrics(0.5, store="maps/train.h5", coverage=cov))
    refined = write_json(
        tmp_path / "refined.json",
        metrics(
            0.6,
            reference_protocol={"miou": 0.6, "protocol": {"store": "maps/train_refined.h5"}, "coverage": refined_cov},
        ),
    )
    seg = write_json(tmp_path / "seg.json", segmentation(0.6, "image"))
    found = store_coverage([cam, refined, seg, tmp_path / "missing.json"])
    assert found == {
        (Path.cwd() / "maps/train.h5").resolve(): cov,
        (Path.cwd() / "maps/train_refined.h5").resolve(): refined_cov,
    }


def test_cli_strips_carry_the_coverage_of_the_scored_stores(tiny_run, run_metrics, tmp_path):
    stores = [f"{name}={path}" for name, path in tiny_run["stores"].items()]
    base = ["report", "--label", "cam=CAM", "drs=DRS", "--main", "drs", "--strip-maps", *stores]
    base += ["--dataset", str(tiny_run["dataset"]), "--num-strip-images", "2", "--panel-size", "48"]
    plain = [f"{e}:{s}={p}" for (e, s), p in run_metrics.items()]
    assert main([*base, "--metrics", *plain, "--out-dir", str(tmp_path / "plain")]) == 0
    scored = write_json(
        tmp_path / "cam_scored.json",
        metrics(
            0.5,
            stage="cam",
            store=str(tiny_run["stores"]["CAM"]),
            coverage={"part": 1.0, "rest_of_object": 0.5, "background": 0.1},
        ),
    )
    with_cov = [p for p in plain if not p.startswith("cam:cam=")] + [f"cam:cam={scored}"]
    assert main([*base, "--metrics", *with_cov, "--out-dir", str(tmp_path / "cov")]) == 0
    with Image.open(tmp_path / "plain/strips.png") as a, Image.open(tmp_path / "cov/strips.png") as b:
        assert a.width == b.width and b.height > a.height  # a coverage row under the columns
