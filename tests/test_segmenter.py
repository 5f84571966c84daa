"""Stages 6 and 7: DeepLabV3+ training on label PNGs or ground truth, prediction and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drs.cli import main
from drs.config.settings import SegmenterSettings
from drs.data.datasets import SegmentationSet
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset, read_label_png, save_label_png
from drs.errors import UserError
from drs.evaluation.evaluate import evaluate
from drs.inference.segment import Predictor
from drs.store.model_files import load_segmenter
from drs.training.segmenter import train_segmenter
from helpers import TINY_SPEC

TINY = dict(
    backbone="resnet18",
    width=0.125,
    pretrained="none",
    epochs=2,
    batch_size=4,
    crop_size=40,
    scale_range=[0.75, 1.25],
    log_every=1,
)


@pytest.fixture(scope="module")
def data(synth_dataset):
    return synth_dataset(SynthSpec(**{**TINY_SPEC, "num_val": 3}))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("segmenter")
    return train_segmenter(data, "train", None, out / "full", SegmenterSettings.from_dict(TINY))


def test_settings_reject_what_does_not_apply():
    with pytest.raises(UserError, match=r"'segmenter': unknown key\(s\) \['stages'\]"):
        SegmenterSettings.from_dict({"stages": 3})
    with pytest.raises(UserError, match="segmenter.scale_range"):
        SegmenterSettings.from_dict({"scale_range": [2.0, 1.0]})
    with pytest.raises(UserError, match=r"'segmenter': unknown key\(s\) \['colour'\]"):
        SegmenterSettings.from_dict({"colour": 1})


def test_segmentation_set_pads_crops_with_ignore(data, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    voc = VOCDataset(data, "train")
    for image_id in voc.ids:
        save_label_png(labels / f"{image_id}.png", voc.load_mask(image_id))
    # a crop larger than the (down-scaled) image is padded: image with 0, label with 255
    settings = SegmenterSettings.from_dict({**TINY, "crop_size": 64, "scale_range": [0.5, 0.5]})
    dataset = SegmentationSet(voc, labels, settings)
    torch.manual_seed(0)
    image, label = dataset[0]
    assert image.shape == (3, 64, 64) and label.shape == (64, 64) and label.dtype == torch.int64
    assert (label == 255).float().mean() >= 1 - (24 * 24) / 64**2 - 1e-6
    assert set(label.unique().tolist()) <= {0, 1, 2, 3, 255}
    # the labels follow the folder, not the dataset's masks
    first = labels / f"{voc.ids[0]}.png"
    save_label_png(first, np.full_like(voc.load_mask(voc.ids[0]), 2))
    _, label = dataset[0]
    assert set(label.unique().tolist()) <= {2, 255}
    first.unlink()
    with pytest.raises(UserError, match=str(first)):
        SegmentationSet(voc, labels, settings)


def test_train_and_load(trained, data):
    model, record = load_segmenter(trained)
    assert record["kind"] == "segmenter" and record["supervision"] == "full" and record["labels"] == "ground-truth"
    assert record["class_names"] == list(VOCDataset(data, "train").class_names)
    assert model.config["num_classes"] == 4 and not model.training


def test_resume_matches_an_uninterrupted_run(data, trained, tmp_path):
    settings = SegmenterSettings.from_dict(TINY)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(data, "train", None, tmp_path / "run", settings, stop_after_steps=3)
    resumed = train_segmenter(data, "train", None, tmp_path / "run", settings)
    a = torch.load(trained, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_predictor_scales_and_flip(trained, data):
    image = VOCDataset(data, "val").load_image(VOCDataset(data, "val").ids[0])
    single = Predictor(trained)
    multi = Predictor(trained, scales=[0.75, 1.0, 1.5], flip=True)
    assert single(image).shape == image.shape[:2] and single(image).dtype == np.uint8
    scores = multi.scores(image)
    assert scores.shape == (4, *image.shape[:2])
    np.testing.assert_allclose(scores.sum(0), 1.0, atol=1e-5)
    # flipping the image flips a flip-averaged prediction
    flipped = Predictor(trained, flip=True)
    np.testing.assert_allclose(flipped.scores(image[:, ::-1])[:, :, ::-1], flipped.scores(image), atol=1e-5)
    with pytest.raises(UserError, match="scales"):
        Predictor(trained, scales=[0])


def test_evaluate_scores_predictions_with_the_shared_metric(trained, data, tmp_path, monkeypatch):
    """segmentation.json's confusion matrix is the sum over images of hand-counted matrices."""
    voc = VOCDataset(data, "val")

    # a predictor that says "class 1" on the left half and background elsewhere
    def fake(self, image):
        out = np.zeros(image.shape[:2], np.uint8)
        out[:, : image.shape[1] // 2] = 1
        return out

    # evaluate takes the arg-max of the scores (which the CRF also needs)
    monkeypatch.setattr(
        Predictor, "scores", lambda self, image: np.eye(4, dtype=np.float32)[fake(self, image)].transpose(2, 0, 1)
    )
    result = evaluate(trained, data, "val", tmp_path / "pred")
    expected = np.zeros((4, 4), np.int64)
    for image_id in voc.ids:
        gt = voc.load_mask(image_id)
        pred = fake(None, voc.load_image(image_id))
        for g, p in zip(gt[gt != 255].ravel(), pred[gt != 255].ravel()):
            expected[g, p] += 1
        np.testing.assert_array_equal(read_label_png(tmp_path / "pred" / f"{image_id}.png"), pred)
    assert np.array(result["confusion_matrix"]).tolist() == expected.tolist()
    tp = np.diag(expected)
    union = expected.sum(0) + expected.sum(1) - tp
    iou = {n: (tp[i] / union[i] if union[i] else None) for i, n in enumerate(voc.class_names)}
    assert result["per_class_iou"] == pytest.approx(iou)
    assert result["pixel_accuracy"] == pytest.approx(tp.sum() / expected.sum())
    assert result["num_images"] == len(voc) and result["split"] == "val" and result["supervision"] == "full"


def test_evaluate_cli_writes_predictions_and_metrics(trained, data, tmp_path):
    out = tmp_path / "segmentation.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained),
                "--dataset",
                str(data),
                "--predictions",
                str(tmp_path / "val"),
                "--out",
                str(out),
                "--scales",
                "1.0",
                "1.25",
                "--flip",
                "--experiment",
                "full",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["experiment"] == "full" and result["multi_scale"] and result["scales"] == [1.0, 1.25]
    assert 0 <= result["miou"] <= 1 and len(result["confusion_matrix"]) == 4
    assert sorted(p.stem for p in (tmp_path / "val").glob("*.png")) == sorted(VOCDataset(data, "val").ids)
    # a folder holding anything but label PNGs is never replaced
    (tmp_path / "val" / "notes.txt").write_text("mine")
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained),
                "--dataset",
                str(data),
                "--predictions",
                str(tmp_path / "val"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert (tmp_path / "val" / "notes.txt").exists()


def test_bad_checkpoint_is_named(tmp_path, data):
    bad = tmp_path / "model.pt"
    torch.save({"kind": "classifier"}, bad)
    with pytest.raises(UserError, match=f"{bad}: not a checkpoint of drs train-segmenter"):
        load_segmenter(bad)
    with pytest.raises(UserError, match="label folder not found"):
        train_segmenter(data, "train", tmp_path / "nowhere", tmp_path / "out", SegmenterSettings.from_dict(TINY))


@pytest.mark.slow
def test_fully_supervised_segmenter_beats_a_constant_predictor(data, tmp_path):
    """Trained on the ground truth (8 epochs, about 40 s), the segmenter scores more on its training
    images than predicting background everywhere (IoU: background's share for background, 0 for
    every class present), which a model that does not learn cannot."""
    trained = train_segmenter(
        data, "train", None, tmp_path / "full", SegmenterSettings.from_dict({**TINY, "epochs": 8})
    )
    result = evaluate(trained, data, "train", tmp_path / "pred")
    voc = VOCDataset(data, "train")
    masks = [voc.load_mask(i) for i in voc.ids]
    valid = sum(int((m != 255).sum()) for m in masks)
    background = sum(int((m == 0).sum()) for m in masks) / valid
    present = set().union(*(set(np.unique(m).tolist()) for m in masks)) - {0, 255}
    constant_miou = background / (1 + len(present))
    assert result["miou"] > constant_miou + 0.05, (result["miou"], constant_miou)
