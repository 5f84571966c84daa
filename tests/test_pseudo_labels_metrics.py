"""The paper's pseudo-label rule on hand-made arrays, and the metric against hand-computed matrices."""

from __future__ import annotations

import numpy as np
import pytest

from drs.evaluation.metrics import SegmentationScore
from drs.labels.rule import pseudo_label


def test_object_cue_background_and_alpha():
    classes = np.array([3])
    maps = np.array([[[0.9, 0.5, 0.15, 0.0]]], dtype=np.float32)  # 1x1x4
    saliency = np.array([[0.95, 0.2, 0.95, 0.0]], dtype=np.float32)
    label = pseudo_label(classes, maps, saliency, alpha=0.2, saliency_threshold=None)  # continuous saliency
    # 0.9 > bg 0.05 -> class 3; 0.5 < bg 0.8 -> background; 0.15 < alpha -> cue 0, bg 0.05 wins;
    # last: bg 1.0 -> background
    assert label.tolist() == [[3, 0, 0, 0]]


def test_conflict_pixels_are_ignored():
    classes = np.array([1, 2])
    maps = np.array([[[0.95, 0.95]], [[0.92, 0.1]]], dtype=np.float32)
    saliency = np.array([[0.05, 0.05]], dtype=np.float32)  # background score 0.95
    label = pseudo_label(classes, maps, saliency, conflict_score=0.9)
    # pixel 0: bg 0.95, c1 0.95, c2 0.92 -> three scores over 0.9 -> ignored
    # pixel 1: bg 0.95 and c1 0.95 only (two) -> arg-max keeps the first (background)
    assert label.tolist() == [[255, 0]]


def test_salient_background_is_ignored():
    classes = np.array([5])
    maps = np.array([[[0.1, 0.6]]], dtype=np.float32)
    saliency = np.array([[1.0, 1.0]], dtype=np.float32)
    label = pseudo_label(classes, maps, saliency, alpha=0.2)
    # pixel 0: cue removed by alpha, bg 0 -> background but fully salient -> 255; pixel 1 -> class 5
    assert label.tolist() == [[255, 5]]


def test_threshold_background_without_saliency():
    classes = np.array([2])
    maps = np.array([[[0.25, 0.35, 1.0]]], dtype=np.float32)
    label = pseudo_label(classes, maps, None, alpha=0.2, bg_threshold=0.3)
    assert label.tolist() == [[0, 2, 2]]


def test_no_classes_is_all_background():
    label = pseudo_label(np.array([], dtype=np.int64), np.zeros((0, 2, 3), np.float32), np.zeros((2, 3), np.float32))
    assert (label == 0).all()


def test_metric_against_hand_computed_confusion():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 255]], dtype=np.uint8)
    score = SegmentationScore(3)
    score.add(pred, gt)
    # valid gt pixels: 7 (one 255); of these pred is 255 once -> 6 counted
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert score.matrix.tolist() == expected.tolist()
    result = score.result(["bg", "a", "b"])
    # IoU: bg 1/(2+2-1)=1/3, a 2/(2+3-2)=2/3, b 1/(2+1-1)=1/2
    assert result["per_class_iou"] == pytest.approx({"bg": 1 / 3, "a": 2 / 3, "b": 1 / 2})
    assert result["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)
    assert result["ignored_fraction"] == pytest.approx(1 / 7)


def test_metric_absent_class_is_not_averaged():
    score = SegmentationScore(3)
    score.add(np.array([[0, 1]], np.uint8), np.array([[0, 1]], np.uint8))
    result = score.result(["bg", "a", "b"])
    assert result["per_class_iou"]["b"] is None
    assert result["miou"] == 1.0


def test_metric_rejects_bad_input():
    score = SegmentationScore(2)
    with pytest.raises(ValueError, match="shape"):
        score.add(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="label 4"):
        score.add(np.zeros((1, 1), np.uint8), np.full((1, 1), 4, np.uint8))


# -- boundaries and defaults (gaps a mutation run found) --------------------------------------------
def test_paper_defaults_background_threshold_and_conflict_score():
    # default background score without saliency is 0.2: a cue of 0.3 wins, 0.15 (below alpha) loses
    label = pseudo_label(np.array([7]), np.array([[[0.3, 0.15]]]), None)
    assert label.tolist() == [[7, 0]] and label.dtype == np.uint8
    # default conflict score 0.9: background 1.0 (no saliency) and two cues of 0.95 -> ignored
    label = pseudo_label(np.array([1, 2]), np.full((2, 1, 1), 0.95), np.zeros((1, 1), np.float32))
    assert label.tolist() == [[255]]


def test_a_map_equal_to_alpha_is_kept_and_a_score_equal_to_the_conflict_score_is_no_conflict():
    label = pseudo_label(np.array([3]), np.full((1, 1, 1), 0.25), None, alpha=0.25, bg_threshold=0.2)
    assert label.tolist() == [[3]]
    # background 0.5 (continuous saliency) and two cues of exactly 0.5: not "more than two above 0.5"
    sal = np.full((1, 1), 0.5, np.float32)
    label = pseudo_label(
        np.array([1, 2]), np.full((2, 1, 1), 0.5), sal, alpha=0.2, conflict_score=0.5, saliency_threshold=None
    )
    assert label.tolist() == [[0]]


def test_metric_accumulates_over_images():
    score = SegmentationScore(2)
    assert score.matrix.dtype == np.int64
    score.add(np.array([[1, 255]], np.uint8), np.array([[0, 1]], np.uint8))  # one ignored, first
    score.add(np.array([[0, 1]], np.uint8), np.array([[0, 1]], np.uint8))
    result = score.result(["bg", "a"])
    assert result["num_images"] == 2
    assert result["confusion_matrix"] == [[1, 1], [0, 1]]  # both images counted
    assert result["ignored_fraction"] == pytest.approx(1 / 4)  # 1 of the 4 valid pixels
    assert result["pixel_accuracy"] == pytest.approx(2 / 3)


def test_metric_label_equal_to_the_count_is_rejected_and_empty_score_is_zero():
    with pytest.raises(ValueError, match=r"label 2 outside 0\.\.1"):
        SegmentationScore(2).add(np.zeros((1, 1), np.uint8), np.full((1, 1), 2, np.uint8))
    empty = SegmentationScore(3).result(["bg", "a", "b"])
    assert empty["miou"] == 0.0 and empty["pixel_accuracy"] == 0.0 and empty["ignored_fraction"] == 0.0
    assert empty["num_images"] == 0 and empty["per_class_iou"] == {"bg": None, "a": None, "b": None}
