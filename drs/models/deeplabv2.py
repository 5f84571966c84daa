"""DeepLab-V2 (Chen et al., TPAMI 2017) on a caffe ResNet: the network behind the paper's 71.4%.

Module for module the network the DRS authors train (their ``DeepLab-V2-PyTorch/libs/models``,
from kazuto1011/deeplab-pytorch), so that their checkpoints load under the same keys:

* ``layer1``, the stem: 7x7 stride-2 convolution, batch norm, ReLU, 3x3 stride-2 max pool with
  ``ceil_mode`` (``layer1.conv1.{conv,bn}``, ``layer1.pool``);
* ``layer2`` .. ``layer5``: bottleneck blocks (``blockN.{reduce,conv3x3,increase,shortcut}``, each a
  convolution without bias and a batch norm), the stride on the first 1x1 convolution (caffe's
  ResNet, not torchvision's), the shortcut a projection in the first block of a layer only; layer3
  has stride 2, layer4 dilation 2 and layer5 dilation 4: output stride 8;
* ``aspp``: the **sum** of four 3x3 convolutions with bias at dilations 6, 12, 18, 24 straight to
  the classes (``aspp.c0`` .. ``aspp.c3``), initialised N(0, 0.01), bias 0.

Batch norm is frozen throughout (:class:`DeepLabV2`: eval mode and no gradient, also in training),
as the reference freezes the batch norm it initialises from COCO. :class:`MultiScale` is the
reference's ``MSC``: the image at 1.0 and at 0.5 and 0.75 of its size; in training the three
logits and their pixel-wise maximum (the smaller ones upsampled bilinearly to the full one's size),
in eval the maximum. Logits are at 1/8 of the input size; the callers upsample them.

Inputs are caffe's: BGR, 0-255, the mean (104.008, 116.669, 122.675) subtracted, no division
(:data:`CAFFE_MEAN_BGR`; ``input_normalization`` "caffe" in the model config).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from drs.errors import UserError

#: the reference's image mean, subtracted from BGR pixels in 0..255 (its configs/voc12.yaml)
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
#: bottlenecks per layer (layer2..layer5) of each backbone
BLOCKS = {"resnet101": (3, 4, 23, 3), "resnet50": (3, 4, 6, 3)}
ATROUS_RATES = (6, 12, 18, 24)
MSC_SCALES = (0.5, 0.75)
BN_EPS = 1e-5
BN_MOMENTUM = 0.999  # the reference's (caffe's moving-average fraction); frozen, so never used
EXPANSION = 4
CONFIG_KEYS = ("num_classes", "backbone", "width", "atrous_rates", "msc_scales")


def _channels(c: int, width: float) -> int:
    return max(1, round(c * width))


class ConvBnReLU(nn.Sequential):
    """A convolution without bias, batch norm and (``relu``) a ReLU: ``conv``, ``bn``, ``relu``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, dilation: int, relu: bool):
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM))
        if relu:
            self.add_module("relu", nn.ReLU())


class Bottleneck(nn.Module):
    """caffe's bottleneck: the stride on the first 1x1 convolution, ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dilation: int, downsample: bool):
        super().__init__()
        mid = out_ch // EXPANSION
        self.reduce = ConvBnReLU(in_ch, mid, 1, stride, 0, 1, True)
        self.conv3x3 = ConvBnReLU(mid, mid, 3, 1, dilation, dilation, True)
        self.increase = ConvBnReLU(mid, out_ch, 1, 1, 0, 1, False)
        self.shortcut = ConvBnReLU(in_ch, out_ch, 1, stride, 0, 1, False) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.increase(self.conv3x3(self.reduce(x)))
        return F.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class ResLayer(nn.Sequential):
    """``n`` bottlenecks ``block1`` .. ``blockN``; the first one strides and projects its shortcut."""

    def __init__(self, n: int, in_ch: int, out_ch: int, stride: int, dilation: int):
        super().__init__()
        for i in range(n):
            first = i == 0
            block = Bottleneck(in_ch if first else out_ch, out_ch, stride if first else 1, dilation, first)
            self.add_module(f"block{i + 1}", block)


class Stem(nn.Sequential):
    """``conv1`` (7x7, stride 2) and ``pool`` (3x3, stride 2, ceil mode)."""

    def __init__(self, out_ch: int):
        super().__init__()
        self.add_module("conv1", ConvBnReLU(3, out_ch, 7, 2, 3, 1, True))
        self.add_module("pool", nn.MaxPool2d(3, 2, 1, ceil_mode=True))


class ASPP(nn.Module):
    """The sum of 3x3 convolutions with bias at the ``rates``, each straight to the classes."""

    def __init__(self, in_ch: int, num_classes: int, rates):
        super().__init__()
        for i, rate in enumerate(rates):
            self.add_module(f"c{i}", nn.Conv2d(in_ch, num_classes, 3, 1, padding=rate, dilation=rate, bias=True))
        for conv in self.children():
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.constant_(conv.bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.children())


class DeepLabV2(nn.Sequential):
    """Dilated caffe ResNet + ASPP, output stride 8, batch norm frozen (eval mode, no gradient)."""

    def __init__(self, num_classes: int, blocks, rates, width: float = 1.0):
        super().__init__()
        ch = [_channels(64 * 2**p, width) for p in range(6)]
        self.add_module("layer1", Stem(ch[0]))
        self.add_module("layer2", ResLayer(blocks[0], ch[0], ch[2], 1, 1))
        self.add_module("layer3", ResLayer(blocks[1], ch[2], ch[3], 2, 1))
        self.add_module("layer4", ResLayer(blocks[2], ch[3], ch[4], 1, 2))
        self.add_module("layer5", ResLayer(blocks[3], ch[4], ch[5], 1, 4))
        self.add_module("aspp", ASPP(ch[5], num_classes, rates))
        for m in self.batch_norms():
            m.requires_grad_(False)

    def batch_norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(self, mode: bool = True) -> DeepLabV2:
        super().train(mode)
        for m in self.batch_norms():  # frozen: the statistics it was initialised with, always
            m.eval()
        return self


class MultiScale(nn.Module):
    """The reference's MSC around a network: logits of the image at 1.0 and at each of ``scales``;
    training returns them and their pixel-wise maximum, eval the maximum (all at the full image's
    logit size, 1/8 of the input)."""

    def __init__(self, base: nn.Module, scales=MSC_SCALES):
        super().__init__()
        self.base = base
        self.scales = tuple(float(s) for s in scales)

    def forward(self, x: torch.Tensor):
        logits = self.base(x)
        size = logits.shape[-2:]
        pyramid = [
            self.base(F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)) for s in self.scales
        ]
        upsampled = [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pyramid]
        best = torch.max(torch.stack([logits, *upsampled]), dim=0)[0]
        return [logits, *pyramid, best] if self.training else best


class DeepLabV2MSC(MultiScale):
    """DeepLab-V2 with multi-scale inputs, as the reference trains it (``DeepLabV2_ResNet101_MSC``):
    its state dict keys are the reference's (``base.layer1.conv1.conv.weight``, ...).
    :attr:`config` rebuilds it."""

    input_normalization = "caffe"

    def __init__(self, base: DeepLabV2, scales, config: dict):
        super().__init__(base, scales)
        self.config = dict(config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DeepLabV2MSC:
        """A randomly initialised network of the same shape (to load a checkpoint's weights into)."""
        unknown = sorted(set(config) - set(CONFIG_KEYS) - {"architecture", "input_normalization"})
        if unknown:
            raise UserError(f"model config key {unknown[0]!r}: unknown key; expected some of {list(CONFIG_KEYS)}")
        return deeplabv2(**{k: v for k, v in config.items() if k in CONFIG_KEYS})

    def parameter_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The reference's three groups (its train.py ``get_params``, after caffe's lr_mult): every
        backbone convolution at ``lr``, the ASPP weights at 10 ``lr``, the ASPP biases at 20 ``lr``
        without weight decay. Batch norm is in none: frozen."""
        backbone = [m.weight for m in self.base.modules() if isinstance(m, nn.Conv2d) and m not in self.aspp_convs()]
        return [
            {"params": backbone, "lr": lr, "weight_decay": weight_decay, "name": "backbone"},
            {
                "params": [c.weight for c in self.aspp_convs()],
                "lr": 10 * lr,
                "weight_decay": weight_decay,
                "name": "aspp_weight",
            },
            {"params": [c.bias for c in self.aspp_convs()], "lr": 20 * lr, "weight_decay": 0.0, "name": "aspp_bias"},
        ]

    def aspp_convs(self) -> list[nn.Conv2d]:
        return list(self.base.aspp.children())


def deeplabv2(
    num_classes: int,
    backbone: str = "resnet101",
    width: float = 1.0,
    atrous_rates=ATROUS_RATES,
    msc_scales=MSC_SCALES,
) -> DeepLabV2MSC:
    """DeepLab-V2 with multi-scale inputs (``MSC``), randomly initialised.

    Args:
        num_classes: output channels (background included).
        backbone: ``resnet101`` (the paper's, blocks 3-4-23-3) or ``resnet50`` (3-4-6-3).
        width: scale of every channel count (1.0: the published network; smaller for a CPU run).
        atrous_rates: the ASPP's dilations (6, 12, 18, 24).
        msc_scales: the input scales beside 1.0 (0.5, 0.75).
    """
    if backbone not in BLOCKS:
        raise UserError(f"backbone {backbone!r}: expected one of {sorted(BLOCKS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes {num_classes!r}: expected a positive integer")
    if not 0 < width <= 1:
        raise UserError(f"width {width}: expected a number in (0, 1]")
    rates = [int(r) for r in atrous_rates]
    scales = [float(s) for s in msc_scales]
    base = DeepLabV2(num_classes, BLOCKS[backbone], rates, width)
    config = {
        "architecture": "deeplabv2",
        "num_classes": num_classes,
        "backbone": backbone,
        "width": width,
        "atrous_rates": rates,
        "msc_scales": scales,
    }
    return DeepLabV2MSC(base, scales, config)


def reference_state(state: dict) -> dict:
    """A state dict of the reference's MSC model as ours: the keys are the same; a ``module.``
    prefix (DataParallel) is dropped."""
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def torchvision_resnet_state(state: dict) -> dict:
    """A torchvision ResNet state dict (ImageNet weights) under the reference's DeepLab-V2 names:
    ``conv1``/``bn1`` -> ``layer1.conv1.{conv,bn}``, ``layerN.i.conv1/2/3`` -> ``layer(N+1).block(i+1).
    {reduce,conv3x3,increase}``, ``downsample.0/1`` -> ``shortcut.{conv,bn}``; ``fc`` is dropped. The
    shapes are the same; torchvision strides the 3x3 convolution where caffe strides the first 1x1,
    so the weights start the network, they do not reproduce an ImageNet classifier."""
    parts = {"conv1": "reduce.conv", "bn1": "reduce.bn", "conv2": "conv3x3.conv", "bn2": "conv3x3.bn"}
    parts |= {"conv3": "increase.conv", "bn3": "increase.bn", "downsample.0": "shortcut.conv"}
    parts |= {"downsample.1": "shortcut.bn"}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in ("conv1", "bn1"):
            out[f"layer1.conv1.{'conv' if head == 'conv1' else 'bn'}.{rest}"] = value
        elif head.startswith("layer") and head[5:].isdigit():
            index, _, inner = rest.partition(".")
            for old, new in parts.items():
                if inner.startswith(old + "."):
                    name = inner[len(old) + 1 :]
                    out[f"layer{int(head[5:]) + 1}.block{int(index) + 1}.{new}.{name}"] = value
                    break
    return out


def infer_deeplabv2(state: dict, src: str) -> dict:
    """``deeplabv2``'s arguments for a state dict of our (the reference's) layout, from its tensors:
    the classes and ASPP branches from ``base.aspp.c*``, the width from the stem, the backbone from
    layer4's block count. The ASPP's dilations and the input scales are not in the weights: the
    reference's (6, 12, 18, 24 for four branches; 0.5, 0.75)."""
    head = state.get("base.aspp.c0.weight")
    stem = state.get("base.layer1.conv1.conv.weight")
    if head is None or stem is None or head.dim() != 4:
        raise UserError(
            f"{src}: no 'base.aspp.c0.weight' or 'base.layer1.conv1.conv.weight': not the reference's DeepLab-V2"
        )
    branches = len({k.split(".")[2] for k in state if k.startswith("base.aspp.c") and k.endswith(".weight")})
    blocks = len({k.split(".")[2] for k in state if k.startswith("base.layer4.")})
    backbone = {layout[2]: name for name, layout in BLOCKS.items()}.get(blocks)
    if backbone is None:
        raise UserError(f"{src}: {blocks} blocks in layer4; expected {sorted(b[2] for b in BLOCKS.values())}")
    if branches != len(ATROUS_RATES):
        raise UserError(f"{src}: {branches} ASPP branches; the reference's DeepLab-V2 has {len(ATROUS_RATES)}")
    width = stem.shape[0] / 64
    return {"num_classes": int(head.shape[0]), "backbone": backbone, "width": 1.0 if width == 1 else width}
