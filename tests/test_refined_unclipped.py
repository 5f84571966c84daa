"""Refined maps enter the pseudo-label rule unclipped, as in the reference
(scripts/pseudo_seg_label_gen.py takes the refiner's multi-scale outputs as they are)."""

from __future__ import annotations

import numpy as np
import torch

from drs.config.settings import MapsSettings
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.inference.maps import REFINED_SCORE_SCALE, combine, extract_maps
from drs.labels.rule import pseudo_label
from drs.models.vgg import drs_vgg16
from drs.store.model_files import save_model
from drs.store.reader import MapStore


def test_combine_keeps_refined_scores_above_one():
    raw = [torch.full((2, 4, 4), 1.5), torch.full((2, 4, 4), 1.2)]
    out = combine(raw, np.array([1, 2]), (8, 8), normalize=False)
    assert torch.allclose(out, torch.full((2, 8, 8), 1.5))
    normalised = combine(raw, np.array([1, 2]), (8, 8), normalize=True)
    assert float(normalised.max()) <= 1.0


def test_refined_store_holds_scores_above_one_and_they_beat_background(tmp_path):
    data = generate(
        tmp_path / "data",
        SynthSpec(num_train=2, num_val=1, image_size=32, num_classes=2, object_size=(12, 20), clutter=0),
        workers=1,
    )
    voc = VOCDataset(data, "train")
    model = drs_vgg16(voc.num_classes, drs="none", width=0.125, stages=3)
    with torch.no_grad():  # every class map is 1.5 everywhere
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(1.5)
    record = {"kind": "refiner", "model_config": model.config, "class_names": list(voc.class_names)}
    (tmp_path / "refiner").mkdir()
    ckpt = save_model(model, record, tmp_path / "refiner")
    store = extract_maps(ckpt, data, "train", tmp_path / "refined.h5", MapsSettings(scales=[32], batch_size=2))
    with MapStore(store) as s:
        assert s.score_scale == REFINED_SCORE_SCALE
        rec = s.read(s.ids[0])
        assert len(rec.classes)
        np.testing.assert_allclose(rec.float(), 1.5, atol=REFINED_SCORE_SCALE / 255)
        # a non-salient pixel (background score 1.0): the object's 1.5 wins, as in the reference
        h, w = rec.size
        label = pseudo_label(rec.classes, rec.float(), np.zeros((h, w), np.float32))
        assert set(np.unique(label).tolist()) <= set(rec.classes.tolist()) | {255}
        assert (label != 0).all()
