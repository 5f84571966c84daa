"""`drs compare-labels A B` on hand-made label PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drs.cli import main
from drs.data.voc import save_label_png
from drs.errors import UserError
from drs.labels.agreement import compare_labels


def write(folder, image_id, rows):
    folder.mkdir(exist_ok=True)
    save_label_png(folder / f"{image_id}.png", np.array(rows, dtype=np.uint8))


def test_agreement_iou_and_255(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "x", [[0, 1, 1, 255], [2, 2, 0, 255]])
    write(b, "x", [[0, 1, 2, 255], [2, 2, 255, 0]])
    write(a, "only_a", [[0]])
    r = compare_labels(a, b, ["background", "cat", "dog"])
    assert r["num_images"] == 1 and r["only_in_a"] == 1 and r["only_in_b"] == 0 and r["pixels"] == 8
    # same value at (0,0) 0, (0,1) 1, (0,3) 255, (1,0) 2, (1,1) 2 -> 5 of 8
    assert r["pixel_agreement"] == pytest.approx(5 / 8)
    # neither 255 at 5 pixels: (0,0) (0,1) (0,2) (1,0) (1,1); agreeing 4 of them
    assert r["agreement_where_both_labelled"] == pytest.approx(4 / 5)
    # over those 5: background 1/1, cat: A {01, 02} B {01} -> 1/2, dog: A {10, 11} B {02, 10, 11} -> 2/3
    assert r["per_class_iou"] == pytest.approx({"background": 1.0, "cat": 0.5, "dog": 2 / 3})
    assert r["miou"] == pytest.approx((1 + 0.5 + 2 / 3) / 3)
    assert r["ignored"] == {"a": 2, "b": 2, "both": 1, "a_fraction": 0.25, "b_fraction": 0.25}
    assert r["per_class_pixels"]["dog"] == {"a": 2, "b": 3}


def test_errors_and_command_line(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "x", [[0, 1]])
    write(b, "y", [[0, 1]])
    with pytest.raises(UserError, match="no <id>.png in common"):
        compare_labels(a, b)
    write(b, "x", [[0], [1]])
    with pytest.raises(UserError, match="is 1x2 but .* is 2x1"):
        compare_labels(a, b)
    write(b, "x", [[0, 1]])
    out = tmp_path / "r.json"
    assert main(["compare-labels", str(a), str(b), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["miou"] == 1.0 and "100.0% of pixels agree" in capsys.readouterr().out
    assert main(["compare-labels", str(a), str(tmp_path / "none")]) == 2


def test_compare_labels_writes_nothing_inside_the_dataset(tmp_path):
    dataset = tmp_path / "ds"
    (dataset / "SegmentationClass").mkdir(parents=True)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        save_label_png(folder / "x.png", np.zeros((2, 2), np.uint8))
    assert main(["compare-labels", str(a), str(b), "--dataset", str(dataset), "--out", str(dataset / "c.json")]) == 2
    assert not (dataset / "c.json").exists()
