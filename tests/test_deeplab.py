"""DeepLabV3+: output shapes, output stride, dilation as torchvision's, backbone weights."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn
from torchvision.models import resnet

from drs.errors import UserError
from drs.models.deeplab import DeepLabV3Plus, _dilate, deeplabv3plus


@pytest.mark.parametrize(
    ("backbone", "stride", "width"),
    [
        ("resnet18", 16, 0.25),
        ("resnet18", 8, 0.125),
        ("resnet50", 16, 0.125),
        ("resnet50", 8, 0.125),
        ("resnet101", 16, 0.0625),
    ],
)
def test_output_size_and_stride(backbone, stride, width):
    torch.manual_seed(0)
    model = deeplabv3plus(5, backbone, stride, width=width).eval()
    x = torch.randn(2, 3, 67, 45)  # sizes that are not multiples of the stride
    with torch.no_grad():
        feats = model.features(x)
        out = model(x)
    assert out.shape == (2, 5, 67, 45)
    # conv1 (/2), max-pool (/4), then layer2..4 at stride 2 unless dilated
    assert feats["low"].shape[-2:] == (math.ceil(67 / 4), math.ceil(45 / 4))
    assert feats["out"].shape[-2:] == (math.ceil(67 / stride), math.ceil(45 / stride))
    assert model.output_stride == stride


def _conv_geometry(module: nn.Module) -> list[tuple]:
    return [
        (name, m.stride, m.dilation, m.padding)
        for name, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and name.startswith("layer")
    ]


@pytest.mark.parametrize("replace", [[False, False, True], [False, True, True]])
def test_dilation_matches_torchvision(replace):
    """_dilate (used for BasicBlock and slim ResNets) reproduces replace_stride_with_dilation."""
    reference = resnet.resnet50(replace_stride_with_dilation=replace)
    ours = resnet.resnet50()
    _dilate(ours, replace)
    assert _conv_geometry(ours) == _conv_geometry(reference)


def test_full_width_resnet50_is_torchvision_layout():
    model = deeplabv3plus(21, "resnet50", 16)
    reference = resnet.resnet50(replace_stride_with_dilation=[False, False, True])
    ours = {k: v.shape for k, v in model.backbone.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert ours == theirs
    assert model.config == {"num_classes": 21, "backbone": "resnet50", "output_stride": 16, "width": 1.0}


def test_from_config_rebuilds_the_same_network():
    model = deeplabv3plus(4, "resnet18", 8, width=0.25)
    again = DeepLabV3Plus.from_config(model.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    again.load_state_dict(model.state_dict())


def test_parameter_groups_cover_every_parameter_once():
    model = deeplabv3plus(4, "resnet18", 16, width=0.125)
    groups = model.parameter_groups(0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.1)]


def test_bad_arguments_are_named():
    with pytest.raises(UserError, match="backbone 'vgg16'"):
        deeplabv3plus(3, "vgg16")
    with pytest.raises(UserError, match="output_stride 32"):
        deeplabv3plus(3, "resnet18", 32)
    with pytest.raises(UserError, match="need width 1"):
        deeplabv3plus(3, "resnet18", weights_backbone="IMAGENET1K_V1", width=0.5)


def test_imagenet_weights_only_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / os.path.basename(resnet.ResNet18_Weights.IMAGENET1K_V1.url)
    with pytest.raises(UserError, match=str(expected)):
        deeplabv3plus(3, "resnet18", weights_backbone="IMAGENET1K_V1")
    # a file in the cache is loaded through torchvision's weights API (no download)
    torch.manual_seed(1)
    source = resnet.resnet18()
    expected.parent.mkdir(parents=True)
    torch.save(source.state_dict(), expected)
    model = deeplabv3plus(3, "resnet18", weights_backbone="IMAGENET1K_V1")
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(UserError, match="not a weights name"):
        deeplabv3plus(3, "resnet18", weights_backbone="NOPE")


@pytest.mark.parametrize(("stride", "rates"), [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_head_is_the_references(stride, rates):
    """VainF's DeepLabHeadV3Plus: ASPP (dropout 0.1) at the stride's rates, a 48-channel low-level
    projection, ONE 3x3 conv (304 -> 256) + BN + ReLU, then the 1x1 classifier; backbone BN
    momentum 0.01, the head's PyTorch's default."""
    model = deeplabv3plus(21, "resnet50", stride)
    head = model.classifier
    assert [type(m) for m in head.classifier] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    assert (head.classifier[0].in_channels, head.classifier[0].out_channels, head.classifier[0].kernel_size) == (
        304,
        256,
        (3, 3),
    )
    assert head.classifier[3].kernel_size == (1, 1) and head.classifier[3].bias is not None
    assert head.project[0].out_channels == 48
    assert [head.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)] == list(rates)
    assert [m.p for m in head.aspp.modules() if isinstance(m, nn.Dropout)] == [0.1]
    assert {m.momentum for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
    assert {m.momentum for m in head.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
