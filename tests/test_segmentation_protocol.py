"""The protocol beside every DeepLabV3+ figure in the report, and the authors' figures for VOC runs."""

from __future__ import annotations

import json

from drs.data.voc import VOC_CLASSES
from drs.report.protocols import protocol_lines
from drs.report.write import write_report


def _segmentation(names, crf=True, name="reference"):
    per_class = {n: 0.5 for n in names}
    metrics = {
        "miou": 0.5,
        "pixel_accuracy": 0.8,
        "per_class_iou": per_class,
        "num_images": 1449,
        "split": "val",
        "class_names": list(names),
        "supervision": "image",
        "protocol": {
            "name": name,
            "split": "val",
            "num_images": 1449,
            "crop": "shorter side resized to 513, 513x513 centre crop",
            "scales": [1.0],
            "flip": False,
            "crf": {"iterations": 10} if crf else None,
            "checkpoint": "last",
            "selected_on_val": False,
        },
    }
    if crf:
        metrics["crf"] = {"miou": 0.55, "pixel_accuracy": 0.81, "per_class_iou": per_class, "num_images": 1449}
    return metrics


def test_voc_run_shows_protocol_and_the_authors_figures(tmp_path):
    path = tmp_path / "segmentation.json"
    path.write_text(json.dumps(_segmentation(VOC_CLASSES)))
    summary = tmp_path / "summary.md"
    files = write_report({("drs", "segmentation"): path}, tmp_path / "report", summary)
    text = summary.read_text()
    line = next(s for s in text.splitlines() if s.startswith("- DeepLabV3+ of `drs`"))
    assert "protocol reference" in line and "val (1449 images)" in line and "513x513 centre crop" in line
    assert "dense CRF: 55.0% mIoU with it, 50.0% without" in line and "no flip" in line and "checkpoint last" in line
    table = text.split("## Reproduction")[1].split("\n## ")[0].splitlines()
    cell = lambda row: [c.strip() for c in row.strip("|").split("|")]  # noqa: E731
    rows = [cell(r) for r in table if r.startswith("| ") and not r.startswith("| figure |")]
    ours = next(r for r in rows if r[0] == "ours: `drs`")
    assert ours[1:7] == ["DeepLabV3+", "val", "1449", "50.0", "55.0", "80.0"] and "513x513 centre crop" in ours[7]
    v3 = next(r for r in rows if r[0].startswith("DeepLabV3+ (ResNet-101) on DRS pseudo labels, the authors'"))
    assert v3[2:6] == ["val", "1449", "70.4", "71.0"] and "selected_on_val" in v3[7] and "--crop_val" in v3[7]
    v2 = next(r for r in rows if r[0].startswith("DeepLab-V2 (ResNet-101) on DRS pseudo labels, the authors'"))
    assert v2[1:6] == ["DeepLab-V2", "val", "1449", "69.4", "70.4"] and "checkpoint_final" in v2[7]
    paper = next(r for r in rows if "the paper's" in r[0])
    assert paper[1:5] == ["DeepLab-V2", "test", "1456", "71.4"]
    html = files["comparison table"].read_text()
    assert "Reproduction" in html and "69.4" in html and "protocol reference" in html


def test_other_datasets_get_no_authors_figures():
    lines = protocol_lines({("drs", "segmentation"): _segmentation(["background", "a", "b"], crf=False, name="full")})
    assert len(lines) == 1 and "protocol full" in lines[0] and "no CRF" in lines[0]
    # metrics written before protocols were recorded: nothing to say
    old = _segmentation(["background", "a"])
    del old["protocol"]
    assert protocol_lines({("drs", "segmentation"): old}) == []


def test_the_seed_decks_published_figures_are_a_row_beside_ours(tmp_path):
    """config/seed-deck.yaml's report.published reaches the reproduction table as written there."""
    import yaml

    from helpers import REPO

    published = yaml.safe_load((REPO / "config" / "seed-deck.yaml").read_text())["report"]["published"]
    path = tmp_path / "segmentation.json"
    path.write_text(json.dumps(_segmentation(VOC_CLASSES)))
    summary = tmp_path / "summary.md"
    write_report({("drs", "segmentation"): path}, tmp_path / "report", summary, published=published)
    rows = [r for r in summary.read_text().split("## Reproduction")[1].splitlines() if r.startswith("| ")]
    deck = [r for r in rows if published[0]["label"] in r]
    assert len(deck) == 1 and "| 65.0 |" in deck[0] and "| 90.0 |" in deck[0], rows
