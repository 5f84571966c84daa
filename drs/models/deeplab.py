"""DeepLabV3+ (Chen et al., ECCV 2018) on a torchvision ResNet: the segmentation network of stage 6.

The network of VainF's DeepLabV3Plus-Pytorch, which the DRS authors vendor and train
(``DeepLabV3Plus-Pytorch/network/_deeplab.py``, ``modeling.py``): the backbone is torchvision's ResNet
with its last stride(s) replaced by dilation, so its deepest features are at 1/16 (output stride 16:
dilation [False, False, True], ASPP rates 6, 12, 18) or 1/8 (output stride 8: [False, True, True],
rates 12, 24, 36) of the input. The head (:class:`DeepLabHeadV3Plus`) runs ASPP (five branches, a
1x1 projection, dropout 0.1) on them, upsamples the result to the stride-4 features of ``layer1``,
concatenates it *after* a 48-channel projection of those, and predicts with ONE 3x3 convolution
(304 -> 256) + batch norm + ReLU and a 1x1 classifier; the logits are upsampled to the input size.
The backbone's batch norm uses momentum 0.01 (the reference's ``set_bn_momentum``).

Module names follow that implementation, so its state dicts (``backbone.*`` with torchvision's
ResNet names and no ``fc``, ``classifier.project.*``, ``classifier.aspp.*``,
``classifier.classifier.*``) load strictly into a network of width 1 (:mod:`drs.store.authors`).

Backbone weights come through torchvision's weights API (``weights_backbone="IMAGENET1K_V1"`` or a
``ResNet*_Weights`` member) and only from torch hub's local cache: nothing is downloaded, and a
missing file is a :class:`~drs.errors.UserError` saying where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP

from drs.errors import UserError
from drs.models.weights_file import read_weights_file

BACKBONES = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights),
    "resnet101": (resnet.resnet101, resnet.ResNet101_Weights),
}
# dilation instead of stride in layer2..layer4, and the ASPP rates, per output stride
_DILATION = {16: [False, False, True], 8: [False, True, True]}
_ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
ASPP_DROPOUT = 0.1  # the reference's ASPP projection (torchvision's ASPP has 0.5)
BACKBONE_BN_MOMENTUM = 0.01  # the reference's utils.set_bn_momentum(model.backbone, 0.01)


class DeepLabHeadV3Plus(nn.Module):
    """ASPP on the deepest features, fused with a projection of the stride-4 features.

    ``aspp`` is torchvision's ASPP module, whose layout (``convs.0-4``, ``project``) is the
    reference's, with its dropout set to 0.1 as the reference's."""

    def __init__(self, in_channels: int, low_channels: int, num_classes: int, rates, width: float = 1.0):
        super().__init__()
        low_out, mid = _scale(48, width), _scale(256, width)
        self.project = nn.Sequential(
            nn.Conv2d(low_channels, low_out, 1, bias=False), nn.BatchNorm2d(low_out), nn.ReLU(inplace=True)
        )
        self.aspp = ASPP(in_channels, list(rates), out_channels=mid)
        dropout = self.aspp.project[-1]
        assert isinstance(dropout, nn.Dropout), "torchvision's ASPP layout changed"
        dropout.p = ASPP_DROPOUT
        self.classifier = nn.Sequential(
            nn.Conv2d(low_out + mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, num_classes, 1),
        )
        for m in self.modules():  # the reference's _init_weight
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project(features["low"])
        high = self.aspp(features["out"])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, high], dim=1))


class DeepLabV3Plus(nn.Module):
    """Logits (N, num_classes, H, W) at the input's size; :attr:`config` rebuilds the network."""

    def __init__(self, backbone: nn.Module, classifier: DeepLabHeadV3Plus, config: dict):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.config = dict(config)

    @property
    def output_stride(self) -> int:
        return self.config["output_stride"]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DeepLabV3Plus:
        """A randomly initialised network of the same shape (to load a checkpoint's weights into)."""
        return deeplabv3plus(**{**config, "weights_backbone": None})

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's stride-4 (``low``) and deepest (``out``) features."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def parameter_groups(self, lr: float, head_factor: float = 10.0) -> list[dict]:
        """The backbone at ``lr``, the head (ASPP, projection, classifier) at ``head_factor`` ``lr``
        (the reference: 0.1 x 0.05 for the backbone, 0.05 for the head)."""
        return [
            {"params": list(self.backbone.parameters()), "lr": lr},
            {"params": list(self.classifier.parameters()), "lr": head_factor * lr},
        ]


def _cached_weights(backbone: str, weights) -> Any:
    """The torchvision weights enum member, after checking its file is in torch hub's cache."""
    enum = BACKBONES[backbone][1]
    try:
        member = enum.verify(weights)
    except (ValueError, KeyError) as err:
        raise UserError(f"backbone weights {weights!r}: not a weights name of {backbone} ({err})") from None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(member.url))
    if not os.path.exists(path):
        raise UserError(
            f"ImageNet {backbone} weights not found at {path} (nothing is downloaded). On a machine with "
            f"internet run: python -c \"import torchvision; torchvision.models.{backbone}(weights='{member.name}')\" "
            f"and copy the file it writes to {path}, or set TORCH_HOME to a folder holding "
            f"hub/checkpoints/{os.path.basename(path)}"
        )
    return member


def deeplabv3plus(
    num_classes: int,
    backbone: str = "resnet101",
    output_stride: int = 16,
    weights_backbone=None,
    width: float = 1.0,
) -> DeepLabV3Plus:
    """DeepLabV3+ on a torchvision ResNet.

    Args:
        num_classes: output channels (background included).
        backbone: ``resnet18``, ``resnet50`` or ``resnet101`` (the paper's).
        output_stride: 16 or 8: the deepest features' stride.
        weights_backbone: None (random init), or torchvision backbone weights (``"IMAGENET1K_V1"``,
            ``"DEFAULT"``, or a ``ResNet*_Weights`` member), read from torch hub's cache only.
        width: scale of every channel count (1.0: the published network; smaller for a CPU run on
            small images; pretrained weights need 1.0).
    """
    if backbone not in BACKBONES:
        raise UserError(f"backbone {backbone!r}: expected one of {sorted(BACKBONES)}")
    if output_stride not in _DILATION:
        raise UserError(f"output_stride {output_stride}: expected 8 or 16")
    if num_classes < 1:
        raise UserError(f"num_classes {num_classes}: expected at least 1")
    if not 0 < width <= 1:
        raise UserError(f"width {width}: expected a number in (0, 1]")
    if weights_backbone is not None and width != 1:
        raise UserError(f"pretrained backbone weights ({weights_backbone!r}) need width 1; got width {width}")
    builder, _ = BACKBONES[backbone]
    dilation = _DILATION[output_stride]
    if width != 1:
        net = _slim_resnet(backbone, width)
    else:
        weights = _cached_weights(backbone, weights_backbone) if weights_backbone else None
        basic = backbone == "resnet18"  # BasicBlock refuses replace_stride_with_dilation
        net = builder(weights=weights, replace_stride_with_dilation=None if basic else dilation)
    if backbone == "resnet18" or width != 1:
        _dilate(net, dilation)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = BACKBONE_BN_MOMENTUM
    body = IntermediateLayerGetter(net, return_layers={"layer1": "low", "layer4": "out"})
    head = DeepLabHeadV3Plus(
        _out_channels(net.layer4), _out_channels(net.layer1), num_classes, _ASPP_RATES[output_stride], width
    )
    config = {"num_classes": num_classes, "backbone": backbone, "output_stride": output_stride, "width": width}
    return DeepLabV3Plus(body, head, config)


def _scale(channels: int, width: float) -> int:
    return max(8, int(round(channels * width)))


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels


class _SlimResNet(resnet.ResNet):
    """torchvision's ResNet with every channel count scaled by ``width`` (its blocks, its layout)."""

    def __init__(self, block, layers: list[int], width: float):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.dilation, self.groups, self.base_width = 1, 1, 64
        self.inplanes = _scale(64, width)
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, _scale(64, width), layers[0])
        self.layer2 = self._make_layer(block, _scale(128, width), layers[1], stride=2)
        self.layer3 = self._make_layer(block, _scale(256, width), layers[2], stride=2)
        self.layer4 = self._make_layer(block, _scale(512, width), layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(_scale(512, width) * block.expansion, 1000)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


_LAYOUT = {
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (resnet.Bottleneck, [3, 4, 23, 3]),
}


def _slim_resnet(backbone: str, width: float) -> resnet.ResNet:
    block, layers = _LAYOUT[backbone]
    return _SlimResNet(block, layers, width)


def _dilate(net: resnet.ResNet, replace: list[bool]) -> None:
    """torchvision's ``replace_stride_with_dilation`` applied to a built ResNet (any block type):
    the layers marked keep their resolution and dilate their 3x3 convolutions instead."""
    dilation = 1
    for layer, swap in zip((net.layer2, net.layer3, net.layer4), replace):
        if not swap:
            continue
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(layer):
            # as torchvision's _make_layer: the first block keeps the previous dilation
            d = previous if index == 0 else dilation
            for conv in (m for m in block.children() if isinstance(m, nn.Conv2d)):
                conv.stride = (1, 1)
                if conv.kernel_size == (3, 3):
                    conv.dilation, conv.padding = (d, d), (d, d)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
            block.stride = 1


def load_backbone_file(model, path: Path) -> None:
    """ResNet weights from a file (a torchvision ResNet state dict; its ``fc`` is ignored)."""
    state = read_weights_file(path, f"backbone weights file {path}")
    if not isinstance(state, dict):
        raise UserError(f"backbone weights file {path}: expected a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        model.backbone.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"backbone weights file {path}: does not fit {model.config['backbone']} ({err})") from None
