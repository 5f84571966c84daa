"""Fold batch norm into the convolutions before it, as the real VGG-16 has none.

In eval mode ``BatchNorm2d(conv(x))`` is an affine map per output channel:
``gamma * (W x + b - mean) / sqrt(var + eps) + beta``, i.e. a convolution with weights
``W * s`` and bias ``(b - mean) * s + beta`` where ``s = gamma / sqrt(var + eps)``. Folding replaces
each (conv, batch norm) pair by that single convolution, so a network pretrained with batch norm
(needed to train it from scratch) is fine-tuned without it, as the paper fine-tunes VGG-16.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return folded.to(conv.weight.device, conv.weight.dtype)


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """A copy of ``seq`` with every Conv2d directly followed by a BatchNorm2d merged into one Conv2d."""
    layers = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        m = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            if not nxt.track_running_stats or nxt.running_mean is None:
                raise ValueError(f"batch norm at position {i + 1} has no running statistics: cannot fold it")
            out.append(fold_conv_bn(m, nxt))
            i += 2
        else:
            out.append(copy.deepcopy(m))
            i += 1
    return nn.Sequential(*out)


def fold_batch_norm(model):
    """A copy of a :class:`drs.models.vgg.DRSClassifier` with batch norm folded into its convolutions
    (backbone and extra layers); its config says ``batch_norm: false, extra_batch_norm: false``, and in
    eval mode it gives the same outputs as ``model``."""
    if any(isinstance(m, nn.GroupNorm) for m in model.modules()):
        raise ValueError("the network has group norm, whose statistics are per image: it cannot be folded")
    folded = copy.deepcopy(model)
    folded.backbone = fold_sequential(model.backbone)
    folded.extra = fold_sequential(model.extra)
    folded.config = {**model.config, "batch_norm": False, "extra_batch_norm": False}
    if any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()):
        raise ValueError("a batch norm that does not follow a convolution is left: cannot fold it")
    return folded


def backbone_state_dict(model, extra: bool = False) -> dict[str, torch.Tensor]:
    """The backbone's convolutions in torchvision's ``features.<i>.weight/bias`` format (i: the
    position in the backbone), which :func:`drs.models.vgg.load_backbone_weights` reads by layer order;
    with ``extra`` also the three extra convolutions as ``extra.<i>.weight/bias``
    (:func:`drs.models.vgg.load_extra_weights`)."""
    state: dict[str, torch.Tensor] = {}
    parts = [("features", model.backbone)] + ([("extra", model.extra)] if extra else [])
    for prefix, seq in parts:
        for i, m in enumerate(seq):
            if isinstance(m, nn.BatchNorm2d):
                raise ValueError(f"{prefix} still has batch norm: fold it first (fold_batch_norm)")
            if isinstance(m, nn.Conv2d):
                state[f"{prefix}.{i}.weight"] = m.weight.detach().clone()
                state[f"{prefix}.{i}.bias"] = m.bias.detach().clone()
    return state
