"""Refinement learning: arg-max targets, joint augmentation, training and refined-map extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drs.config.settings import ClassifierSettings, MapsSettings, RefinerSettings
from drs.data.datasets import RefineSet, arg_max_only
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.inference.maps import extract_maps
from drs.store.model_files import load_classifier
from drs.store.reader import MapStore
from drs.training.classifier import train_classifier
from drs.training.refiner import train_refiner

TINY = dict(
    width=0.125,
    batch_norm=True,
    extra_batch_norm=True,
    stages=3,
    pretrained="none",
    epochs=2,
    batch_size=4,
    input_size=48,
    crop_size=40,
    log_every=1,
)


def test_arg_max_only_keeps_each_pixels_best_class():
    maps = np.array([[[0.9, 0.1], [0.0, 0.5]], [[0.3, 0.7], [0.0, 0.5]]], dtype=np.float32)
    out = arg_max_only(maps)
    # pixel (0,0): class 0 wins; (0,1): class 1; (1,0): all zero; (1,1): tie -> the first class
    np.testing.assert_array_equal(out, np.array([[[0.9, 0.0], [0.0, 0.5]], [[0.0, 0.7], [0.0, 0.0]]], dtype=np.float32))
    assert arg_max_only(np.zeros((0, 2, 2), np.float32)).shape == (0, 2, 2)


@pytest.fixture(scope="module")
def pipeline(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    data = tiny_dataset
    classifier = train_classifier(
        data, "train", root / "classifier", ClassifierSettings.from_dict({**TINY, "lr": 0.01}), "learnable"
    )
    store = extract_maps(classifier, data, "train", root / "train.h5", MapsSettings(scales=[40, 48], batch_size=4))
    return root, data, store


def test_refine_set_augments_image_and_target_together(pipeline):
    _, data, store = pipeline
    dataset = RefineSet(VOCDataset(data, "train"), store, input_size=48, crop_size=40)
    torch.manual_seed(0)
    image, target = dataset[0]
    assert image.shape == (3, 40, 40) and target.shape == (3, 40, 40)
    assert type(image) is torch.Tensor and type(target) is torch.Tensor
    assert float(target.min()) >= 0 and float(target.max()) <= 1
    # after resizing, still at most one clearly positive class per pixel almost everywhere
    assert ((target > 0.05).sum(0) <= 1).float().mean() > 0.9


def _aligned_set(tmp_path, input_size, crop_size):
    """A one-image dataset whose stored map of class 1 is the image's own red channel, so that a
    target augmented in step with its image must still equal that channel."""
    from PIL import Image

    from drs.data.voc import save_label_png
    from drs.store.writer import MapStoreWriter

    root = tmp_path / "aligned"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("img\n")
    y, x = np.mgrid[0:48, 0:48]
    rgb = np.stack([x * 4 + y, np.full_like(x, 90), 255 - x * 4], -1).astype(np.uint8)  # no symmetry
    Image.fromarray(rgb).save(root / "JPEGImages/img.jpg")
    save_label_png(root / "SegmentationClass/img.png", np.ones((48, 48), np.uint8))
    voc = VOCDataset(root, "train")
    red = voc.load_image("img")[..., 0]
    store = tmp_path / "aligned.h5"
    with MapStoreWriter(
        store,
        class_names=["background", "a", "b"],
        scales=[48],
        flip=False,
        stage="cam",
        split="train",
        dataset=str(root),
    ) as w:
        w.add("img", np.array([1]), red[None])
    dataset = RefineSet(voc, store, input_size=input_size, crop_size=crop_size)
    dataset.jitter = lambda image: image  # colour jitter touches the image only: leave it out here
    return dataset


@pytest.mark.parametrize("input_size", [48, 56])
def test_refine_set_keeps_image_and_target_aligned(tmp_path, input_size):
    from drs.data.transforms import MEAN, STD

    dataset = _aligned_set(tmp_path, input_size, crop_size=40)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        image, target = dataset[0]
        red = (image[0] * STD[0] + MEAN[0]).clamp(0, 1)  # undo the normalisation
        assert target.shape == (2, 40, 40) and float(target[1].abs().max()) == 0.0
        torch.testing.assert_close(target[0], red, atol=2.5 / 255, rtol=0)
        seen.add((bool(red[0, 0] > red[0, -1]), round(float(red[0, 0]) * 255)))
    # the draws covered flipped and unflipped images and more than one crop
    assert {flipped for flipped, _ in seen} == {False, True} and len(seen) > 2


@pytest.fixture(scope="module")
def refiner(pipeline):
    root, data, store = pipeline
    return train_refiner(data, "train", store, root / "refiner", RefinerSettings.from_dict({**TINY, "lr": 0.001}))


def test_refiner_resume_matches_an_uninterrupted_run(pipeline, refiner, tmp_path, caplog):
    _, data, store = pipeline
    settings = RefinerSettings.from_dict({**TINY, "lr": 0.001})
    with pytest.raises(KeyboardInterrupt):
        train_refiner(data, "train", store, tmp_path / "run", settings, stop_after_steps=3)  # in epoch 2
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1
    with caplog.at_level("INFO", logger="drs.train"):
        resumed = train_refiner(data, "train", store, tmp_path / "run", settings)
    assert "resuming from" in caplog.text and "after epoch 1 of 2" in caplog.text  # not started over
    a = torch.load(refiner, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_train_refiner_and_extract_refined_maps(pipeline, refiner):
    root, data, store = pipeline
    ckpt = refiner
    model, record = load_classifier(ckpt, kinds=("refiner",))
    assert record["kind"] == "refiner" and not model.drs_modules() and len(record["targets_sha256"]) == 64
    with pytest.raises(UserError, match="not a checkpoint of drs train-classifier"):
        load_classifier(ckpt)
    refined = extract_maps(
        ckpt, data, "train", root / "train_refined.h5", MapsSettings(scales=[48], flip=True, batch_size=4)
    )
    with MapStore(refined) as r, MapStore(store) as c:
        assert r.stage == "refined" and c.stage == "cam"
        assert r.ids == c.ids
        for a, b in zip(r, c):
            assert a.classes.tolist() == b.classes.tolist() and a.maps.shape == b.maps.shape


def test_refiner_settings_and_store_errors(pipeline, tmp_path):
    _, data, _ = pipeline
    with pytest.raises(UserError, match="config key 'refiner': unknown key"):
        RefinerSettings.from_dict({"epoch": 3})
    with pytest.raises(UserError, match="crop_size"):
        RefinerSettings.from_dict({"input_size": 32, "crop_size": 40})
    from drs.store.writer import MapStoreWriter

    partial = tmp_path / "partial.h5"
    voc = VOCDataset(data, "train")
    with MapStoreWriter(
        partial,
        class_names=list(voc.class_names),
        scales=[48],
        flip=False,
        stage="cam",
        split="train",
        dataset=str(data),
    ) as w:
        w.add(voc.ids[0], voc.labels(voc.ids[0]), np.zeros((len(voc.labels(voc.ids[0])), 48, 48), np.uint8))
    with pytest.raises(UserError, match="no maps for 7 image"):
        RefineSet(voc, partial, 48, 40)


def test_reference_refiner_input_and_init(pipeline):
    """The reference's LoadData_refine.py: the whole image resized to crop_size, no random crop;
    models/vgg_refine.py: new layers N(0, 0.01) with zero biases; run.sh: decay at 10 and 20."""
    _, data, store = pipeline
    voc = VOCDataset(data, "train")
    dataset = RefineSet(voc, store, input_size=48, crop_size=40, random_crop=False)
    torch.manual_seed(0)
    image, target = dataset[0]
    assert image.shape == (3, 40, 40) and target.shape == (3, 40, 40)
    from torchvision.transforms import v2

    with MapStore(store) as s:
        whole = v2.functional.resize(torch.from_numpy(arg_max_only(s.dense(voc.ids[0]))), [40, 40], antialias=True)
    assert torch.allclose(target, whole, atol=1e-6) or torch.allclose(target, whole.flip(-1), atol=1e-6)

    from drs.models.vgg import drs_vgg16
    from drs.training.refiner import init_new_layers

    model = drs_vgg16(3, drs="none", width=0.5, stages=3)
    init_new_layers(model, "normal")
    weights = torch.cat([m.weight.detach().flatten() for m in model.extra.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(weights.std()) - 0.01) < 0.001 and float(model.classifier.bias.detach().abs().max()) == 0
    assert RefinerSettings().lr_decay_epochs == [10, 20]
    with pytest.raises(UserError, match="refiner.new_layer_init"):
        RefinerSettings.from_dict({"new_layer_init": "xavier"})
