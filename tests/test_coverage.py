"""Map scoring on a hand-made 2x4 image: pseudo-label mIoU (threshold and saliency background)
and coverage of part, rest of object and background, all computed by hand below."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from drs.config.settings import PseudoLabelSettings
from drs.data.voc import save_label_png
from drs.labels.coverage import Coverage
from drs.labels.scoring import evaluate_store
from drs.store.writer import MapStoreWriter

MASK = np.array([[1, 1, 0, 2], [1, 1, 0, 0]], np.uint8)
PART = np.array([[1, 0, 0, 2], [0, 0, 0, 0]], np.uint8)
# stored maps, uint8 (score x 255): class 1 = 1.0 .4 0 0 / .6 .102 .4 0; class 2 = 0 0 0 1 / 0 0 0 .302
MAPS = np.array([[[255, 102, 0, 0], [153, 26, 102, 0]], [[0, 0, 0, 255], [0, 0, 0, 77]]], np.uint8)
SALIENCY = np.array([[255, 255, 0, 255], [255, 255, 0, 0]], np.uint8)


def test_coverage_counts_part_rest_and_background_separately():
    coverage = Coverage()
    coverage.add(np.array([1, 2]), MAPS / 255.0, MASK, PART, alpha=0.2)
    result = coverage.result()
    # part pixels: (0,0) of class 1 and (0,3) of class 2, both reached
    assert result["part"] == 1.0
    # rest of object: class 1's (0,1) (1,0) (1,1), the part (0,0) excluded; (1,1) is below alpha
    assert result["rest_of_object"] == pytest.approx(2 / 3)
    # background (0,2) (1,2) (1,3): (1,2) reached by class 1, (1,3) by class 2
    assert result["background"] == pytest.approx(2 / 3)
    assert result["part_mean_score"] == pytest.approx(1.0)
    assert result["rest_mean_score"] == pytest.approx((102 + 153 + 26) / 255 / 3)


def test_coverage_pools_pixels_over_images_and_handles_no_parts():
    coverage = Coverage()
    coverage.add(np.array([1, 2]), MAPS / 255.0, MASK, PART, alpha=0.2)
    # a second image: one class-1 object of 1 part pixel (reached) and 1 rest pixel (missed)
    coverage.add(np.array([1]), np.array([[[0.9, 0.1, 0.0]]]), np.array([[1, 1, 0]]), np.array([[1, 0, 0]]), 0.2)
    result = coverage.result()
    assert result["part"] == 1.0 and result["rest_of_object"] == pytest.approx(2 / 4)
    assert result["background"] == pytest.approx(2 / 4)
    # without part masks, only the background share
    plain = Coverage()
    plain.add(np.array([1, 2]), MAPS / 255.0, MASK, None, alpha=0.2)
    assert plain.result() == {"background": pytest.approx(2 / 3)}


@pytest.fixture
def hand_made(tmp_path):
    root = tmp_path / "data"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationPart", "saliency_map", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("img\n")
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(root / "JPEGImages/img.jpg")
    save_label_png(root / "SegmentationClass/img.png", MASK)
    save_label_png(root / "SegmentationPart/img.png", PART)
    Image.fromarray(SALIENCY, mode="L").save(root / "saliency_map/img.png")
    store = tmp_path / "train.h5"
    with MapStoreWriter(
        store,
        class_names=["background", "a", "b"],
        scales=[4],
        flip=False,
        stage="cam",
        split="train",
        dataset=str(root),
    ) as w:
        w.add("img", np.array([1, 2]), MAPS)
    return root, store


def test_eval_maps_scores_match_hand_computed_figures(hand_made):
    root, store = hand_made
    result = evaluate_store(store, root)
    # threshold background 0.2: labels 1 1 0 2 / 1 0 1 2 against 1 1 0 2 / 1 1 0 0
    #   IoU background 1/4, a 3/5, b 1/2
    assert result["miou_threshold"] == pytest.approx((0.25 + 0.6 + 0.5) / 3)
    thr = result["threshold_result"]
    assert thr["per_class_iou"] == pytest.approx({"background": 0.25, "a": 0.6, "b": 0.5})
    assert thr["pixel_accuracy"] == pytest.approx(5 / 8)
    # saliency background: labels 1 1 0 2 / 1 255 0 0 (salient but background: ignored)
    assert result["background_cue"] == "saliency"
    assert result["miou"] == result["miou_saliency"] == pytest.approx(1.0)
    assert result["ignored_fraction"] == pytest.approx(1 / 8)
    assert result["num_images"] == 1 and result["split"] == "train"
    assert result["coverage"]["rest_of_object"] == pytest.approx(2 / 3)
    assert result["coverage"]["part"] == 1.0 and result["coverage"]["background"] == pytest.approx(2 / 3)
    # without saliency, the threshold figures are the main ones
    plain = evaluate_store(store, root, PseudoLabelSettings(saliency="none"))
    assert plain["background_cue"] == "threshold" and plain["miou"] == pytest.approx(0.45)
