"""The DRS authors' VGG-16 state dicts, key for key onto :class:`drs.models.vgg.DRSClassifier`.

The reference (github qjadud1994/DRS, ``models/vgg.py`` and ``models/vgg_refine.py``) saves
``{"model": state_dict, "optimizer": ..., ...}`` (``scripts/train_cls.py``, ``train_refine.py``)
where the state dict is that of its ``VGG`` module:

* the 13 VGG-16 convolutions twice, as ``features.N.{weight,bias}`` (N = 0, 2, 5, 7, 10, 12, 14,
  17, 19, 21, 24, 26, 28: the indices of torchvision's layer list "D1", pool5 removed) and as the
  same tensors under ``layerX_convY.{weight,bias}`` (X = 1..5, Y = 1..3);
* the learnable DRS controllers ``layerX_reluY.fc.0.weight`` and ``extra_reluY.fc.0.weight``
  (C_in x C_in, no bias; only in the learnable classifier: the fixed-delta DRS and the refiner's
  ReLUs hold no parameters);
* the new layers ``extra_conv1..3`` (3x3, 512 -> 512) and ``extra_conv4`` (1x1, 512 -> classes).

Each tensor goes to the layer at the same position of our network (:func:`drs.models.vgg.drs_vgg16`
at width 1 (or the width that the first convolution's 64 x width filters tell), 5 stages, no batch
norm), which computes the same class maps (the reference's ``extra_conv4`` output, before its ReLU /
upsampling). Anything else, a missing tensor, or a shape that does not fit is refused, naming the
first such key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from drs.errors import UserError
from drs.models.drs import DRS
from drs.models.vgg import DRSClassifier, drs_vgg16

#: the reference's names of VGG-16's 13 convolutions, in order
REFERENCE_CONVS = tuple(
    f"layer{stage}_conv{i}" for stage, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)
)
#: their index in the reference's ``features`` list (make_layers(cfg['D1']))
REFERENCE_FEATURE_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
REFERENCE_DRS = tuple(name.replace("_conv", "_relu") for name in REFERENCE_CONVS) + tuple(
    f"extra_relu{i}" for i in (1, 2, 3)
)
REFERENCE_EXTRA = tuple(f"extra_conv{i}" for i in (1, 2, 3))
REFERENCE_CLASSIFIER = "extra_conv4"


def _mapping(model, drs: str) -> list[tuple[str, Any]]:
    """(reference key, our tensor) for every tensor of ``model``, in order."""
    backbone_convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    extra_convs = [m for m in model.extra if isinstance(m, nn.Conv2d)]
    controllers = [m for m in model.modules() if isinstance(m, DRS) and m.kind == "learnable"]
    pairs: list[tuple[str, Any]] = []
    for name, conv in zip(REFERENCE_CONVS + REFERENCE_EXTRA, backbone_convs + extra_convs):
        pairs += [(f"{name}.weight", conv.weight), (f"{name}.bias", conv.bias)]
    pairs += [
        (f"{REFERENCE_CLASSIFIER}.weight", model.classifier.weight),
        (f"{REFERENCE_CLASSIFIER}.bias", model.classifier.bias),
    ]
    if drs == "learnable":
        pairs += [(f"{name}.fc.0.weight", m.fc.weight) for name, m in zip(REFERENCE_DRS, controllers)]
    if len(pairs) != len(dict(pairs)) or len(backbone_convs) != 13 or len(extra_convs) != 3:
        raise AssertionError("the model is not the 5-stage VGG-16 the reference uses")
    return pairs


def reference_num_classes(state: Mapping[str, Any], src: str) -> int:
    """The number of classes of a reference state dict (its ``extra_conv4`` 1x1 head)."""
    head = state.get(f"{REFERENCE_CLASSIFIER}.weight")
    if not isinstance(head, torch.Tensor) or head.dim() != 4:
        raise UserError(
            f"{src}: key '{REFERENCE_CLASSIFIER}.weight' missing or not a 4-d tensor: not a reference DRS VGG-16"
        )
    return int(head.shape[0])


def from_reference_state(state: Mapping[str, Any], src: str, *, drs: str, delta: float | None) -> DRSClassifier:
    """Our DRSClassifier (in eval mode) holding the reference tensors of ``state`` (read from
    ``src``, which the messages name); UserError names the first key that does not fit."""
    num_classes = reference_num_classes(state, src)
    # the reference network is VGG-16 at full width; a narrower copy (every channel count scaled
    # alike, as drs_vgg16's ``width``) converts the same way, which keeps tests small
    first = state.get(f"{REFERENCE_CONVS[0]}.weight", state.get("features.0.weight"))
    if not isinstance(first, torch.Tensor) or first.dim() != 4:
        raise UserError(f"{src}: key '{REFERENCE_CONVS[0]}.weight' missing or not a 4-d tensor")
    width = 1.0 if first.shape[0] == 64 else first.shape[0] / 64
    try:
        model = drs_vgg16(num_classes, drs=drs, delta=delta, width=width)
    except ValueError as err:
        raise UserError(f"--drs {drs} --delta {delta}: {err}") from None
    pairs = _mapping(model, drs)
    expected = dict(pairs)
    # the features.N duplicates of the convolutions: accepted when they equal their layer copy
    duplicates = {
        f"features.{i}.{p}": f"{name}.{p}"
        for i, name in zip(REFERENCE_FEATURE_INDEX, REFERENCE_CONVS)
        for p in ("weight", "bias")
    }
    for key, value in state.items():
        if key in expected:
            continue
        if key in duplicates:
            twin = state.get(duplicates[key])
            if (
                isinstance(twin, torch.Tensor)
                and isinstance(value, torch.Tensor)
                and (value.shape != twin.shape or not torch.equal(value, twin))
            ):
                raise UserError(
                    f"{src}: key {key!r} differs from {duplicates[key]!r}; the reference shares one tensor between them"
                )
            continue
        hint = " (a learnable-DRS controller: convert with --drs learnable)" if key.endswith(".fc.0.weight") else ""
        raise UserError(
            f"{src}: unexpected key {key!r} for a {drs} {'refiner' if drs == 'none' else 'classifier'}{hint}"
        )
    for key, target in pairs:
        value = state.get(key)
        if value is None:
            twin = next((d for d, k in duplicates.items() if k == key), None)
            value = state.get(twin) if twin else None
        if value is None:
            hint = (
                " (no learnable-DRS controllers: a fixed-delta classifier? --drs fixed --delta D)"
                if key.endswith(".fc.0.weight")
                else ""
            )
            raise UserError(f"{src}: key {key!r} missing (expected shape {tuple(target.shape)}){hint}")
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{src}: key {key!r} is not a tensor")
        if value.shape != target.shape:
            raise UserError(f"{src}: key {key!r} has shape {tuple(value.shape)}; expected {tuple(target.shape)}")
        if not value.is_floating_point():
            raise UserError(f"{src}: key {key!r} has dtype {value.dtype}; expected floating point")
    with torch.no_grad():
        for key, target in pairs:
            value = state.get(key)
            if value is None:
                value = state[next(d for d, k in duplicates.items() if k == key)]
            target.copy_(value.to(target.dtype))
    model.eval()
    return model
