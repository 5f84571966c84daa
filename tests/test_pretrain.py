"""`drs corpus` + `drs pretrain-backbone`: a tiny corpus, one epoch, a folded weights file that the
classifier loads as `pretrained:`."""

import pytest
import torch

from drs.cli import main
from drs.data.corpus import class_names, generate_image
from drs.data.voc import VOCDataset


def test_corpus_is_deterministic_and_labelled(tmp_path):
    a, cls_a = generate_image(0, 3, 32)
    b, cls_b = generate_image(0, 3, 32)
    assert (a == b).all() and cls_a == cls_b and 1 <= cls_a < len(class_names())
    assert main(["corpus", str(tmp_path / "c"), "--num-images", "6", "--image-size", "32"]) == 0
    voc = VOCDataset(tmp_path / "c", "train")
    assert len(voc) == 6 and voc.num_classes == 32
    assert all(len(voc.labels(i)) == 1 for i in voc.ids)  # one object, one class


@pytest.mark.slow
def test_pretrain_backbone_writes_folded_weights_the_classifier_loads(tmp_path):
    from drs.models.vgg import drs_vgg16

    assert main(["corpus", str(tmp_path / "c"), "--num-images", "8", "--image-size", "32"]) == 0
    settings = (
        '{"width": 0.125, "batch_norm": true, "extra_batch_norm": true, "stages": 3, "pretrained": "none", '
        '"epochs": 1, "batch_size": 4, "input_size": 32, "crop_size": 32}'
    )
    out = tmp_path / "backbone.pt"
    assert (
        main(
            ["pretrain-backbone", "--corpus", str(tmp_path / "c"), "--out", str(out), "--settings", settings, "--extra"]
        )
        == 0
    )
    state = torch.load(out, weights_only=True)
    assert any(k.startswith("extra.") for k in state) and not any("running_mean" in k for k in state)
    model = drs_vgg16(4, width=0.125, stages=3, weights=out)
    assert torch.equal(model.extra[0].weight, state["extra.0.weight"])
