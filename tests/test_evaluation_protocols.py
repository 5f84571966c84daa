"""Stage 7's protocols: the authors' crop (--crop_val), dense CRF, and the VOC test-server submission."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from drs.cli import main
from drs.config.settings import EvaluationSettings, SegmenterSettings
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset, read_label_png
from drs.errors import UserError
from drs.evaluation.crf import crf_labels
from drs.evaluation.evaluate import evaluate
from drs.inference.segment import reference_crop
from drs.training.segmenter import train_segmenter
from helpers import TINY_SPEC

TINY = dict(
    backbone="resnet18", width=0.125, pretrained="none", epochs=1, batch_size=4, crop_size=40, scale_range=[0.75, 1.25]
)


@pytest.fixture(scope="module")
def data(synth_dataset):
    return synth_dataset(SynthSpec(**{**TINY_SPEC, "num_val": 3}))


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("segmenter")
    return train_segmenter(data, "train", None, out / "full", SegmenterSettings.from_dict(TINY))


@pytest.mark.parametrize(("height", "width"), [(375, 501), (501, 375), (333, 333)])
def test_reference_crop_on_odd_sizes(height, width):
    """Shorter side to 513 (longer: int(513 * long / short)), then the centre 513 x 513 with
    offsets int(round(excess / 2)); image bilinear, mask nearest, restated with PIL's own calls."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rows, cols = np.indices((height, width))
    mask = ((rows // 3) * 7 + cols) % 21  # every pixel's position is readable from its label
    mask = mask.astype(np.uint8)
    crop_image, crop_mask = reference_crop(image, mask)
    assert crop_image.shape == (513, 513, 3) and crop_mask.shape == (513, 513)
    short, long = min(height, width), max(height, width)
    new_long = int(513 * long / short)
    new_h, new_w = (513, new_long) if height <= width else (new_long, 513)
    top, left = int(round((new_h - 513) / 2)), int(round((new_w - 513) / 2))
    box = (left, top, left + 513, top + 513)
    expected_image = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR).crop(box)
    np.testing.assert_array_equal(crop_image, np.asarray(expected_image))
    # nearest neighbour: output pixel (i, j) of the resized mask reads source pixel floor((i + 0.5) * scale)
    src_rows = np.floor((np.arange(top, top + 513) + 0.5) * height / new_h).astype(int)
    src_cols = np.floor((np.arange(left, left + 513) + 0.5) * width / new_w).astype(int)
    np.testing.assert_array_equal(crop_mask, mask[np.ix_(src_rows, src_cols)])


def test_reference_protocol_scores_the_crop(model, data, tmp_path):
    result = evaluate(model, data, "val", tmp_path / "pred", EvaluationSettings(protocol="reference", crop_size=40))
    # every pixel of every 40 x 40 crop of the resized mask is counted, except 255
    voc = VOCDataset(data, "val")
    crops = [reference_crop(voc.load_image(i), voc.load_mask(i), 40)[1] for i in voc.ids]
    assert np.sum(result["confusion_matrix"]) == sum(int((c != 255).sum()) for c in crops) > 0.9 * 3 * 40 * 40
    assert {read_label_png(p).shape for p in (tmp_path / "pred").glob("*.png")} == {(40, 40)}
    protocol = result["protocol"]
    assert protocol["name"] == "reference" and protocol["scales"] == [1.0] and protocol["flip"] is False
    assert protocol["split"] == "val" and protocol["num_images"] == 3 and "centre crop" in protocol["crop"]
    assert protocol["crf"] is None and protocol["checkpoint"] == "last" and protocol["selected_on_val"] is False
    full = evaluate(model, data, "val", tmp_path / "pred_full")
    masks = [voc.load_mask(i) for i in voc.ids]
    assert np.sum(full["confusion_matrix"]) == sum(int((m != 255).sum()) for m in masks)
    assert full["protocol"]["name"] == "full" and full["protocol"]["crop"].startswith("none")
    with pytest.raises(UserError, match="one scale without flip"):
        evaluate(model, data, "val", tmp_path / "x", EvaluationSettings(scales=[1.0, 1.5], protocol="reference"))


def _blob_image(seed=0):
    """A two-colour image with an ellipse, and its labels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((64, 80))
    truth = (((rows - 30) / 18.0) ** 2 + ((cols - 42) / 24.0) ** 2 <= 1).astype(np.uint8)
    image = np.where(truth[..., None] == 1, [200, 60, 40], [40, 90, 200]).astype(float)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    return image, truth


def _iou(pred, truth):
    return ((pred == 1) & (truth == 1)).sum() / ((pred == 1) | (truth == 1)).sum()


def test_crf_sharpens_a_blurred_prediction():
    image, truth = _blob_image()
    # a deliberately blurred, too large object: dilated by 5 px, then Gaussian-blurred
    grown = ndimage.binary_dilation(truth, iterations=5).astype(float)
    fg = np.clip(ndimage.gaussian_filter(grown, 4), 0.02, 0.98)
    prob = np.stack([1 - fg, fg]).astype(np.float32)
    before = _iou(prob.argmax(0), truth)
    after = _iou(crf_labels(image, prob), truth)
    assert before < 0.85
    assert after > before + 0.05 and after > 0.9


def test_evaluate_with_crf_records_both(model, data, tmp_path):
    out = tmp_path / "seg.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model),
                "--dataset",
                str(data),
                "--split",
                "val",
                "--predictions",
                str(tmp_path / "pred"),
                "--out",
                str(out),
                "--crf",
                "--crf-workers",
                "2",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert 0 <= result["miou"] <= 1 and 0 <= result["crf"]["miou"] <= 1
    assert result["crf"]["num_images"] == 3 and set(result["crf"]["per_class_iou"]) == set(result["per_class_iou"])
    assert result["protocol"]["crf"]["bilateral_sxy"] == 67 and result["protocol"]["crf"]["iterations"] == 10
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == sorted(f"{i}.png" for i in _ids(data, "val"))


def _ids(root, split):
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def _withheld(data, tmp_path):
    """The val images as a split 'test' of a folder without masks (as VOC's test set)."""
    root = tmp_path / "voc_test"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = _ids(data, "val")
    for image_id in ids:
        shutil.copyfile(data / "JPEGImages" / f"{image_id}.jpg", root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets" / "Segmentation" / "test.txt").write_text("\n".join(ids) + "\n")
    shutil.copyfile(data / "class_names.txt", root / "class_names.txt")
    return root, ids


def test_submission_on_a_split_without_masks(model, data, tmp_path):
    root, ids = _withheld(data, tmp_path)
    archive = tmp_path / "sub" / "voc2012_test.tar.gz"
    out = tmp_path / "test.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model),
                "--dataset",
                str(root),
                "--split",
                "test",
                "--predictions",
                str(tmp_path / "pred"),
                "--out",
                str(out),
                "--submission",
                str(archive),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert "miou" not in result and result["num_images"] == len(ids) and result["submission"] == str(archive)
    layout = tmp_path / "sub" / "voc2012_test" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert sorted(p.name for p in layout.iterdir()) == sorted(f"{i}.png" for i in ids)
    with tarfile.open(archive) as tar:
        members = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert members == sorted(f"results/VOC2012/Segmentation/comp6_test_cls/{i}.png" for i in ids)
        for image_id in ids:
            png = Image.open(tar.extractfile(f"results/VOC2012/Segmentation/comp6_test_cls/{image_id}.png"))
            assert png.mode == "P"  # palette PNG, as the server wants
            size = Image.open(root / "JPEGImages" / f"{image_id}.jpg").size
            assert png.size == size  # whole images, not crops
            np.testing.assert_array_equal(np.array(png), read_label_png(tmp_path / "pred" / f"{image_id}.png"))
    # some masks but not all: refused, naming the first missing one
    (root / "SegmentationClass").mkdir()
    shutil.copyfile(data / "SegmentationClass" / f"{ids[0]}.png", root / "SegmentationClass" / f"{ids[0]}.png")
    with pytest.raises(UserError, match=f"{ids[1]}.png: mask missing"):
        evaluate(model, root, "test", tmp_path / "pred2", submission=archive)
    (root / "SegmentationClass" / f"{ids[0]}.png").unlink()
    with pytest.raises(UserError, match="no masks to score"):
        evaluate(model, root, "test", tmp_path / "pred3")


def test_crf_bench_runs_small():
    from drs.bench.crf import bench_crf, format_crf_result

    result = bench_crf(images=2, height=64, width=80, classes=3, workers=1)
    assert result["single_images_per_s"] > 0 and result["parallel_images_per_s"] > 0 and result["workers"] == 1
    assert "lower bound" in format_crf_result(result)


def test_config_rules_for_protocol_and_checkpoint():
    from drs.config.workflow import check_config

    base = {"dataset": "synthetic", "experiments": {"drs": {"drs": "learnable"}}, "main_experiment": "drs"}
    check_config({**base, "evaluation": {"protocol": "reference", "scales": [1.0], "flip": False}})
    with pytest.raises(UserError, match="'evaluation.protocol': reference is one scale without flip"):
        check_config({**base, "evaluation": {"protocol": "reference", "scales": [1.0], "flip": True}})
    with pytest.raises(UserError, match="best_on_val needs segmenter.val_every"):
        check_config({**base, "evaluation": {"checkpoint": "best_on_val"}})
    check_config({**base, "evaluation": {"checkpoint": "best_on_val"}, "segmenter": {"val_every": 100}})
