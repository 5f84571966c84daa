"""GroupNorm in place of batch norm (classifier/refiner ``norm: group``): per-image statistics, the
same convolutions from the same seed as the batch-norm network, and the default (``norm: batch``)
network unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from drs.config.settings import ClassifierSettings, RefinerSettings
from drs.errors import UserError
from drs.models.fold import fold_batch_norm
from drs.models.vgg import DRSClassifier, drs_vgg16, group_count
from drs.training.classifier import build_classifier


@pytest.mark.parametrize(
    "channels, groups",
    [(8, 2), (16, 4), (32, 8), (64, 16), (128, 32), (512, 32), (4, 1), (6, 1), (12, 3), (20, 5), (13, 1), (1, 1)],
)
def test_group_count_caps_at_32_with_at_least_4_channels_a_group(channels, groups):
    assert group_count(channels) == groups
    assert channels % group_count(channels) == 0


def _pair(drs="learnable", seed=0):
    torch.manual_seed(seed)
    bn = drs_vgg16(3, drs=drs, width=0.125, batch_norm=True, extra_batch_norm=True, stages=3)
    torch.manual_seed(seed)
    gn = drs_vgg16(3, drs=drs, width=0.125, batch_norm=True, extra_batch_norm=True, stages=3, norm="group")
    return bn, gn


def test_group_norm_replaces_every_batch_norm_and_keeps_the_convolutions():
    bn, gn = _pair()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    kinds_bn = [type(m).__name__ for m in bn.modules()]
    kinds_gn = [type(m).__name__.replace("GroupNorm", "BatchNorm2d") for m in gn.modules()]
    assert kinds_gn == kinds_bn  # a GroupNorm where each batch norm was, nothing else changed
    norms = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 10 and [m.num_groups for m in norms[:2]] == [2, 2] and norms[-1].num_groups == 16
    # the same random draws: every parameter the two networks share is equal (the seed's convolutions)
    sb, sg = bn.state_dict(), gn.state_dict()
    assert set(sg) < set(sb)
    for key, value in sg.items():
        torch.testing.assert_close(value, sb[key], rtol=0, atol=0)
    assert gn.config["norm"] == "group" and bn.config["norm"] == "batch"


def test_group_norm_training_output_of_an_image_does_not_depend_on_the_batch():
    bn, gn = _pair()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)
    for model, independent in ((gn, True), (bn, False)):
        model.train()
        with torch.no_grad():
            alone = model(x[:1])
            batched = model(x)[:1]
        assert torch.allclose(alone, batched, atol=1e-5) is independent
    with torch.no_grad():  # and eval mode computes as training mode: no statistics are tracked
        trained = gn.train()(x)
        evaluated = gn.eval()(x)
    torch.testing.assert_close(evaluated, trained)


def test_settings_take_norm_and_build_it():
    assert ClassifierSettings().norm == "batch" and RefinerSettings().norm == "batch"
    values = {"width": 0.125, "batch_norm": True, "extra_batch_norm": True, "stages": 3, "pretrained": "none"}
    settings = ClassifierSettings.from_dict({**values, "norm": "group"})
    model = build_classifier(4, settings, drs="none", delta=None)
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 10
    default = build_classifier(4, ClassifierSettings.from_dict(values), drs="none", delta=None)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in default.modules()) == 10
    with pytest.raises(UserError, match="'classifier.norm'"):
        ClassifierSettings.from_dict({**values, "norm": "layer"})
    with pytest.raises(UserError, match="'refiner.norm'"):
        RefinerSettings.from_dict({"norm": "instance"})


def test_config_roundtrip_and_older_configs_without_norm():
    _bn, gn = _pair("none")
    rebuilt = DRSClassifier.from_config(gn.config)
    rebuilt.load_state_dict(gn.state_dict())
    assert repr(rebuilt) == repr(gn)
    old = {k: v for k, v in gn.config.items() if k != "norm"}  # a checkpoint from before the key
    assert any(isinstance(m, nn.BatchNorm2d) for m in DRSClassifier.from_config(old).modules())
    with pytest.raises(UserError, match="norm 'layer'"):
        DRSClassifier.from_config({**gn.config, "norm": "layer"})


def test_group_norm_cannot_be_folded_nor_take_imagenet_weights():
    _bn, gn = _pair("none")
    with pytest.raises(ValueError, match="group norm"):
        fold_batch_norm(gn)
    with pytest.raises(UserError, match="norm 'group'"):
        drs_vgg16(20, batch_norm=True, norm="group", weights="imagenet")
