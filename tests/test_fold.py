"""Folding batch norm into the convolutions (drs.models.fold) and loading the folded backbone."""

import pytest
import torch
from torch import nn

from drs.models.fold import backbone_state_dict, fold_batch_norm
from drs.models.vgg import DRSClassifier, drs_vgg16


def _bn_model(drs="learnable", seed=0):
    torch.manual_seed(seed)
    model = drs_vgg16(3, drs=drs, width=0.125, batch_norm=True, extra_batch_norm=True, stages=3)
    # non-trivial statistics and affine parameters, as after training
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("drs", ["learnable", "none"])
def test_folded_network_gives_the_same_outputs_in_eval_mode(drs):
    model = _bn_model(drs)
    folded = fold_batch_norm(model).eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.config["batch_norm"] is False and folded.config["extra_batch_norm"] is False
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref_logits, ref_maps = model(x, return_maps=True)
        logits, maps = folded(x, return_maps=True)
    torch.testing.assert_close(maps, ref_maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    # the original is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folded_config_rebuilds_a_network_without_batch_norm():
    folded = fold_batch_norm(_bn_model())
    rebuilt = DRSClassifier.from_config(folded.config)
    rebuilt.load_state_dict(folded.state_dict())  # same keys and shapes


def test_folded_backbone_loads_as_pretrained_weights_of_a_smaller_network(tmp_path):
    model = _bn_model("none")
    folded = fold_batch_norm(model).eval()
    path = tmp_path / "backbone.pt"
    torch.save(backbone_state_dict(folded), path)
    # fine-tuning network: DRS modules, no batch norm, same width and stages, other classes
    target = drs_vgg16(5, drs="learnable", width=0.125, stages=3, weights=path).eval()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        want = model.backbone(x)
        got = target.backbone[0](x)  # first conv: weights and bias both folded
        torch.testing.assert_close(got, fold_batch_norm(model).backbone[0](x))
    convs = [m for m in target.backbone if isinstance(m, nn.Conv2d)]
    sources = [m for m in folded.backbone if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(sources) == 7
    for a, b in zip(convs, sources):
        torch.testing.assert_close(a.weight, b.weight)
        torch.testing.assert_close(a.bias, b.bias)
    assert want.shape[1] == convs[-1].out_channels


def test_backbone_state_dict_refuses_unfolded_batch_norm():
    with pytest.raises(ValueError, match="fold it first"):
        backbone_state_dict(_bn_model())


def test_folded_extra_layers_load_too_and_need_a_network_without_extra_batch_norm(tmp_path):
    from drs.errors import UserError

    folded = fold_batch_norm(_bn_model("none")).eval()
    path = tmp_path / "backbone_extra.pt"
    torch.save(backbone_state_dict(folded, extra=True), path)
    target = drs_vgg16(5, drs="none", width=0.125, stages=3, weights=path).eval()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():  # backbone and extra layers are the folded ones: same features
        torch.testing.assert_close(target.extra(target.backbone(x)), folded.extra(folded.backbone(x)))
    # a backbone-only file leaves the extra layers as initialised (the paper's new layers)
    only = tmp_path / "backbone.pt"
    torch.save(backbone_state_dict(folded), only)
    torch.manual_seed(3)
    fresh = drs_vgg16(5, drs="none", width=0.125, stages=3, weights=only)
    torch.manual_seed(3)
    plain = drs_vgg16(5, drs="none", width=0.125, stages=3)
    torch.testing.assert_close(fresh.extra[0].weight, plain.extra[0].weight)
    with pytest.raises(UserError, match="extra_batch_norm: false"):
        drs_vgg16(5, drs="none", width=0.125, stages=3, extra_batch_norm=True, weights=path)
