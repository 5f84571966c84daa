"""The report's verdict (DRS against CAM at every stage) and the scoring named in every table."""

from __future__ import annotations

import json

import pytest

from drs.report.verdict import verdict, verdict_line
from drs.report.write import headline_section, write_report

NAMES = ["background", "a", "b"]


def _scores(miou, split, num_images, **extra):
    per_class = {n: miou for n in NAMES}
    return {
        "miou": miou,
        "pixel_accuracy": 0.9,
        "per_class_iou": per_class,
        "split": split,
        "num_images": num_images,
        **extra,
    }


def labels_file(ours, reference, ignored=0.05):
    """A cam.json / refined.json: ours at the top (train_aug), the reference's on train."""
    reference = _scores(reference, "train", 8, protocol={"name": "reference"})
    return _scores(
        ours, "train_aug", 12, ignored_fraction=ignored, reference_protocol=reference, headline_protocol="reference"
    )


def segmentation_file(miou, crf, supervision="image"):
    return _scores(
        miou,
        "val",
        6,
        stage="segmentation",
        supervision=supervision,
        class_names=NAMES,
        protocol={"name": "full", "checkpoint": "last", "crop": "none", "scales": [1.0], "flip": False},
        crf=_scores(crf, "val", 6),
    )


@pytest.fixture
def run(tmp_path):
    """CAM end to end beside DRS; CAM's labels win under our scoring, DRS's under the reference's."""
    data = {
        ("cam", "cam"): labels_file(0.78, 0.57),
        ("cam", "refined"): labels_file(0.70, 0.60),
        ("cam", "segmentation"): segmentation_file(0.62, 0.64),
        ("drs", "cam"): labels_file(0.74, 0.74),
        ("drs", "refined"): labels_file(0.73, 0.73),
        ("drs", "segmentation"): segmentation_file(0.60, 0.65),
        ("full", "segmentation"): segmentation_file(0.67, 0.69, "full"),
    }
    paths = {}
    for (exp, stage), values in data.items():
        path = tmp_path / exp / f"{stage}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(values))
        paths[(exp, stage)] = path
    return data, paths


LABELS = {"cam": "CAM", "drs": "DRS", "full": "fully supervised"}


def test_verdict_numbers_are_the_metrics_files(run, tmp_path):
    data, paths = run
    summary = tmp_path / "summary.md"
    written = write_report(paths, tmp_path / "report", summary, labels=LABELS, main="drs", baseline="cam")
    record = json.loads(written["verdict"].read_text())
    got = {(c["stage"], c["scoring"]): c for c in record["comparisons"]}
    stages = {"cam": "pseudo labels from the classifier maps", "refined": "pseudo labels from the refined maps"}
    for stage, title in stages.items():
        for scoring in ("reference", "ours"):
            entry = got[(title, scoring)]
            pick = (lambda d: d["reference_protocol"]) if scoring == "reference" else (lambda d: d)  # noqa: E731
            assert entry["baseline"]["miou"] == pick(data[("cam", stage)])["miou"]
            assert entry["main"]["miou"] == pick(data[("drs", stage)])["miou"]
            assert entry["split"] == pick(data[("cam", stage)])["split"]
    seg = got[("DeepLabV3+ on the pseudo labels", "either")]
    assert (seg["baseline"]["miou"], seg["main"]["miou"]) == (0.62, 0.60) and seg["ahead"] == "CAM"
    crf = got[("DeepLabV3+ on the pseudo labels", "either, dense CRF")]
    assert (crf["baseline"]["miou"], crf["main"]["miou"]) == (0.64, 0.65) and crf["ahead"] == "DRS"
    assert got[(stages["cam"], "ours")]["ahead"] == "CAM" and got[(stages["cam"], "reference")]["ahead"] == "DRS"
    # the sentence, in the headline, says the segmenter's result whatever its sign, with the protocol
    line = next(x for x in headline_section(summary).splitlines() if x.startswith("- Verdict"))
    assert line == "- " + record["line"]
    assert "DRS 60.0% against CAM 62.0% mIoU" in line and "CAM ahead by 2.0 points" in line
    assert "val, 6 images, protocol full, last checkpoint" in line and "with the dense CRF 65.0% against 64.0%" in line


def test_a_tie_and_no_baseline():
    same = {
        ("cam", "segmentation"): segmentation_file(0.6, 0.6),
        ("drs", "segmentation"): segmentation_file(0.6004, 0.6),
    }
    assert "a tie (within 0.1 point)" in verdict_line(verdict(same, "drs", "cam", LABELS))
    assert verdict(same, "drs", None) == [] and verdict_line([]) is None


def _tables(text):
    """Every markdown table of a summary: (header cells, first body row)."""
    lines = text.splitlines()
    for n, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[n + 1].startswith("|---"):
            yield [c.strip() for c in line.strip("|").split("|")]


def test_every_table_names_its_scoring(run, tmp_path):
    """No figure column without its scoring: each column of mIoU, IoU, accuracy or ignored share
    names one in its header, or the table has a scoring column."""
    _, paths = run
    summary = tmp_path / "summary.md"
    write_report(paths, tmp_path / "report", summary, labels=LABELS, main="drs", baseline="cam")
    tables = list(_tables(summary.read_text()))
    assert len(tables) >= 5  # comparison, verdict, per experiment x3
    for header in tables:
        if "scoring" in header:
            continue
        figures = [h for h in header if any(k in h for k in ("%", "mIoU", "maps (", "(val)", "accuracy"))]
        assert figures, header
        for cell in figures:
            assert "scoring" in cell, (cell, header)
    page = (tmp_path / "report" / "comparison.html").read_text()
    assert "mIoU (%), reference scoring" in page and "mIoU (%), our scoring" in page


def test_training_curves_are_drawn_with_the_checkpoint_used(run, tmp_path):
    from PIL import Image

    from drs.report.curves import checkpoint_step, selected_checkpoint
    from drs.training.history import History, read_history

    _, paths = run
    for stage in ("classifier", "segmenter"):
        history = History(tmp_path / "drs" / stage, None)
        for step in range(1, 11):
            history.add(epoch=1, step=step, loss=1 / step, lr=0.01, images_per_s=5.0, seconds=step,
                        val_miou=0.5 if step % 5 == 0 else None)  # fmt: skip
    histories = {("drs", s): tmp_path / "drs" / s / "history.csv" for s in ("classifier", "segmenter")}
    histories[("cam", "classifier")] = tmp_path / "imported" / "history.csv"  # no file: skipped
    written = write_report(paths, tmp_path / "report", None, labels=LABELS, main="drs", histories=histories)
    assert sorted(k for k in written if k.startswith("training curve")) == [
        "training curve of drs (classifier)",
        "training curve of drs (segmenter)",
    ]
    with Image.open(written["training curve of drs (segmenter)"]) as png:
        assert png.width >= 700 and png.height >= 500  # two panels: loss and validation mIoU
    rows = read_history(histories[("drs", "segmenter")])
    assert checkpoint_step(rows) == (10, "checkpoint used: the last")
    best = {
        "protocol": {"selected_on_val": True, "checkpoint": "best on val (step 5 of validations every 5, mIoU 0.5)"}
    }
    assert checkpoint_step(rows, selected_checkpoint(best)) == (5, "checkpoint used: best on val")
