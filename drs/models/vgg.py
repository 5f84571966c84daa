"""The DRS classifier: the paper's modified VGG-16, built from torchvision's VGG layer configuration.

Backbone (torchvision's VGG-16 configuration "D", optionally with batch norm as in ``vgg16_bn``),
modified as in the paper:

* pool5 is removed and pool4 becomes ``MaxPool2d(3, stride=1, padding=1)``;
* the three conv5 convolutions are dilated by 2 (padding 2);
* every ReLU is followed by a DRS module (:func:`drs.models.drs.activation`).

Then the *extra* layers, new in the paper: three 3x3 convolutions of 512 channels (each followed by
ReLU + DRS; batch norm before the activation only with ``extra_batch_norm``: ``batch_norm`` makes the
backbone VGG-16-BN and leaves the paper's extra layers as they are) and a 1x1 convolution to ``num_classes`` class
maps (no activation). Logits are the global average of the class maps.

``stages`` keeps the first N of VGG-16's five conv stages. The pooling after the last kept stage is
dropped (as pool5 is for the full model), the other poolings stay as in VGG-16 except pool4, which
is the 3x3 stride-1 one. Output strides:

=======  =========================================  =============
stages   backbone                                   output stride
=======  =========================================  =============
5        conv1 p conv2 p conv3 p conv4 p' conv5(d2)  8
4        conv1 p conv2 p conv3 p conv4               8
3        conv1 p conv2 p conv3                       4
=======  =========================================  =============

(p: 2x2 stride-2 max pool, p': 3x3 stride-1 max pool, d2: dilation 2.)
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

from drs.errors import UserError
from drs.models.drs import DRS, activation
from drs.models.weights_file import read_weights_file

#: VGG-16's conv stages (torchvision configuration "D" split at its poolings).
VGG16_STAGES: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
EXTRA_CHANNELS = 512
OUTPUT_STRIDE = {3: 4, 4: 8, 5: 8}
CONFIG_KEYS = ("num_classes", "drs", "delta", "width", "batch_norm", "stages", "extra_batch_norm", "norm")
#: the normalisation layer that ``batch_norm`` / ``extra_batch_norm`` insert after a convolution
NORMS = ("batch", "group")
#: GroupNorm's groups: as Wu & He's 32, but at least this many channels in each group
MIN_GROUP_CHANNELS = 4


def _scale(c: int, width: float) -> int:
    return max(1, round(c * width))


def group_count(channels: int) -> int:
    """GroupNorm's number of groups for ``channels``: the largest divisor of ``channels`` up to
    ``min(32, channels // 4)`` (at least 1).

    32 is Wu & He's default (VGG-16's 64-512 channels: 2-16 channels a group). At 1/8 width the
    layers have 8-64 channels, where 32 groups would be (nearly) one channel a group: instance norm,
    which divides out each channel's own per-image magnitude, the very evidence a global-average
    classifier reads. At least 4 channels a group keeps the channels' relative magnitudes within it.
    """
    cap = max(1, min(32, channels // MIN_GROUP_CHANNELS))
    return max(g for g in range(1, cap + 1) if channels % g == 0)


def _norm_layer(channels: int, norm: str) -> nn.Module:
    """The normalisation after a convolution: BatchNorm2d, or GroupNorm (per-image statistics)."""
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.BatchNorm2d(channels)


def _init_conv(conv: nn.Conv2d) -> None:
    k = conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(2.0 / (k * conv.out_channels)))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _init_layers(module: nn.Module) -> None:
    """Initialise every conv / batch norm / DRS controller inside ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            _init_conv(m)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, DRS):
            m.reset_parameters()


def _check_args(num_classes, drs, delta, width, batch_norm, stages, norm="batch") -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes {num_classes!r}: expected a positive integer")
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not (0 < width <= 16)
        or not math.isfinite(width)
    ):
        raise ValueError(f"width {width!r}: expected a number in (0, 16]")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"batch_norm {batch_norm!r}: expected true or false")
    if isinstance(stages, bool) or stages not in OUTPUT_STRIDE:
        raise ValueError(f"stages {stages!r}: expected one of {sorted(OUTPUT_STRIDE)}")
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}: expected one of {list(NORMS)}")
    activation(1, drs, delta)  # validates drs / delta


def _backbone(
    drs: str, delta: float | None, width: float, batch_norm: bool, stages: int, norm: str = "batch"
) -> tuple[nn.Sequential, int]:
    """The modified VGG-16 backbone and its number of output channels."""
    cfg: list[int | str] = []
    for i, stage in enumerate(VGG16_STAGES[:stages]):
        if i:
            cfg.append("M")
        cfg.extend(_scale(c, width) for c in stage)
    plain = tv_vgg.make_layers(cfg, batch_norm=batch_norm)

    layers: list[nn.Module] = []
    stage = 1  # 1-based index of the stage the walk is in
    channels = 3
    for m in plain:
        if isinstance(m, nn.MaxPool2d):
            stage += 1
            # The pool between stage 4 and stage 5 is pool4: 3x3 stride 1 in the paper.
            layers.append(nn.MaxPool2d(3, stride=1, padding=1) if stage == 5 else m)
        elif isinstance(m, nn.Conv2d):
            if stage == 5:
                m = nn.Conv2d(m.in_channels, m.out_channels, kernel_size=3, padding=2, dilation=2)
            channels = m.out_channels
            layers.append(m)
        elif isinstance(m, nn.ReLU):
            layers.append(activation(channels, drs, delta))
        else:  # BatchNorm2d (torchvision's), or its replacement
            layers.append(m if norm == "batch" else _norm_layer(channels, norm))
    return nn.Sequential(*layers), channels


def _extra(
    in_channels: int, drs: str, delta: float | None, width: float, batch_norm: bool, norm: str = "batch"
) -> tuple[nn.Sequential, int]:
    channels = _scale(EXTRA_CHANNELS, width)
    layers: list[nn.Module] = []
    for _ in range(3):
        layers.append(nn.Conv2d(in_channels, channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(_norm_layer(channels, norm))
        layers.append(activation(channels, drs, delta))
        in_channels = channels
    return nn.Sequential(*layers), channels


class DRSClassifier(nn.Module):
    """Backbone + extra convs + 1x1 classifier; logits are the global average of the class maps.

    Build it with :func:`drs_vgg16` (or :meth:`from_config` from a checkpoint's ``config``).
    """

    def __init__(
        self, backbone: nn.Sequential, extra: nn.Sequential, classifier: nn.Conv2d, config: dict, output_stride: int
    ):
        super().__init__()
        self.backbone = backbone
        self.extra = extra
        self.classifier = classifier
        self.config = dict(config)
        self.output_stride = output_stride
        self.num_classes = classifier.out_channels
        #: batch norm kept in eval mode in training (its running statistics used and not updated; its
        #: affine weights still train), as when fine-tuning a batch-norm network on small batches
        self.freeze_batch_norm = False

    def train(self, mode: bool = True) -> DRSClassifier:
        super().train(mode)
        if mode and self.freeze_batch_norm:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DRSClassifier:
        """Rebuild (randomly initialised) from :attr:`config`, e.g. before loading a checkpoint's weights.

        Bad keys or values raise UserError naming the key.
        """
        if not isinstance(config, Mapping):
            raise UserError(f"model config: expected a mapping of {list(CONFIG_KEYS)}; got {type(config).__name__}")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise UserError(f"model config key {unknown[0]!r}: unknown key; expected one of {list(CONFIG_KEYS)}")
        if "num_classes" not in config:
            raise UserError("model config key 'num_classes': missing")
        try:
            return drs_vgg16(**config)
        except ValueError as e:
            raise UserError(f"model config: {e}") from None

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class maps (B, num_classes, H / output_stride, W / output_stride), before any ReLU."""
        return self.classifier(self.extra(self.backbone(x)))

    def forward(self, x: torch.Tensor, return_maps: bool = False):
        """Logits (B, num_classes); with ``return_maps`` the pair (logits, class maps) from one pass."""
        maps = self.class_maps(x)
        logits = maps.mean(dim=(2, 3))
        return (logits, maps) if return_maps else logits

    def drs_modules(self) -> list[DRS]:
        return [m for m in self.modules() if isinstance(m, DRS)]

    def parameter_groups(self, lr: float) -> list[dict]:
        """Four SGD parameter groups as in the paper.

        backbone weights: lr, backbone biases: 2 lr, new-layer weights: 10 lr, new-layer biases: 20 lr.
        New layers are ``extra``, ``classifier`` and every DRS controller ``fc`` (also those in the
        backbone). Batch-norm weights/biases count as weights/biases of their part.
        """
        new_ids = {id(p) for m in (self.extra, self.classifier) for p in m.parameters()}
        new_ids |= {id(p) for m in self.drs_modules() for p in m.parameters()}
        groups = {key: [] for key in ("backbone_weight", "backbone_bias", "new_weight", "new_bias")}
        for name, p in self.named_parameters():
            part = "new" if id(p) in new_ids else "backbone"
            kind = "bias" if name.rsplit(".", 1)[-1] == "bias" else "weight"
            groups[f"{part}_{kind}"].append(p)
        mult = {"backbone_weight": 1, "backbone_bias": 2, "new_weight": 10, "new_bias": 20}
        return [{"params": params, "lr": lr * mult[key], "name": key} for key, params in groups.items()]


def imagenet_weights_path(batch_norm: bool = False) -> str:
    """Where torch hub caches torchvision's ImageNet VGG-16 (or VGG-16-BN) weights."""
    enum = tv_vgg.VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else tv_vgg.VGG16_Weights.IMAGENET1K_V1
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(enum.url))


def _layer_tensors(state: Mapping[str, Any], path: str) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """``features.<i>.<name>`` tensors grouped by layer index i, in order."""
    by_index: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        parts = str(key).split(".")
        if len(parts) != 3 or parts[0] != "features" or not parts[1].isdigit():
            continue
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: entry {key!r} is not a tensor")
        by_index.setdefault(int(parts[1]), {})[parts[2]] = value
    return sorted(by_index.items())


def _read_weights_file(path: str) -> Any:
    """What the weights file at ``path`` holds (``torch.load``, weights only); a UserError naming it
    when it is missing or unreadable."""
    return read_weights_file(path, f"VGG-16 weights file {path}")


def load_backbone_weights(model: DRSClassifier, path: str | os.PathLike, state: Any = None) -> None:
    """Copy the ``features.*`` convolutions (and batch norms) of a torchvision-format VGG-16 state dict
    into ``model.backbone``, matched by layer order (the modified backbone has the same layers in the
    same order; its pool/activation indices differ). torchvision's classifier is ignored. ``state``:
    the file's content when the caller has read it already (else it is read from ``path``).
    """
    path = os.fspath(path)
    if state is None:
        state = _read_weights_file(path)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise UserError(f"VGG-16 weights file {path}: expected a state dict (a mapping of names to tensors)")

    targets = [m for m in model.backbone.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm))]
    sources = _layer_tensors(state, path)
    want = "VGG-16-BN" if any(isinstance(m, nn.BatchNorm2d) for m in targets) else "VGG-16"
    if any(isinstance(m, nn.GroupNorm) for m in targets):
        want = "VGG-16 with GroupNorm"
    if len(sources) != len(targets):
        raise UserError(
            f"VGG-16 weights file {path}: has {len(sources)} 'features.*' layers with parameters; "
            f"a torchvision {want} has {len(targets)}"
        )
    plan: list[tuple[torch.Tensor, torch.Tensor]] = []
    for (index, tensors), module in zip(sources, targets):
        expected = {k: v for k, v in module.state_dict().items()}
        if isinstance(module, nn.BatchNorm2d) and "num_batches_tracked" not in tensors:
            expected.pop("num_batches_tracked", None)
        if set(tensors) != set(expected):
            raise UserError(
                f"VGG-16 weights file {path}: layer 'features.{index}' holds {sorted(tensors)}; "
                f"the {want} layer at that position ({type(module).__name__}) needs {sorted(expected)}"
            )
        for name, target in expected.items():
            source = tensors[name]
            if source.shape != target.shape:
                raise UserError(
                    f"VGG-16 weights file {path}: 'features.{index}.{name}' has shape {tuple(source.shape)}; "
                    f"expected {tuple(target.shape)} (a torchvision {want} at width 1)"
                )
            plan.append((target, source))
    with torch.no_grad():
        for target, source in plan:
            target.copy_(source)


def load_classifier_checkpoint(model: DRSClassifier, state: Mapping[str, Any], path: str) -> None:
    """Every layer of ``model`` from the state dict of a ``drs train-classifier`` (or train-refiner)
    ``model.pt``, batch-norm statistics included: e.g. DRS fine-tuned from a trained CAM network,
    whose state dict is the DRS network's less its DRS controllers, which keep their initialisation
    (so does the 1x1 classifier of a network trained on another number of classes). Any other key
    missing, left over or of another shape is a UserError naming the file."""
    expected = model.state_dict()
    controllers = {
        f"{name}.fc.weight" for name, m in model.named_modules() if isinstance(m, DRS) and m.kind == "learnable"
    }
    # a network trained on other classes (e.g. the corpus of `drs pretrain-backbone`): its 1x1
    # classifier stays new, as the paper's new layers
    head = {"classifier.weight", "classifier.bias"}
    if any(k in state and getattr(state[k], "shape", None) != expected[k].shape for k in head):
        state = {k: v for k, v in state.items() if k not in head}
        controllers |= head
    missing = sorted(k for k in expected if k not in state and k not in controllers)
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        what = f"lacks {missing[0]!r}" if missing else f"has {unexpected[0]!r}, which the network has not"
        raise UserError(f"classifier checkpoint {path}: {what} (a network of another shape or normalisation?)")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(
                f"classifier checkpoint {path}: {key!r} has shape {got}; expected {tuple(expected[key].shape)}"
            )
    with torch.no_grad():
        for key, value in state.items():
            expected[key].copy_(value)


def _checkpoint_state(checkpoint: Any, path: str) -> Mapping[str, Any] | None:
    """The state dict of ``checkpoint`` (read from ``path``) if it is a train-classifier /
    train-refiner ``model.pt``, else None."""
    if isinstance(checkpoint, Mapping) and checkpoint.get("kind") in ("classifier", "refiner"):
        state = checkpoint.get("state_dict")
        if not isinstance(state, Mapping):
            raise UserError(f"classifier checkpoint {path}: has no state dict")
        return state
    return None


def load_extra_weights(model: DRSClassifier, state: Mapping[str, Any], path: str) -> bool:
    """Copy ``extra.<i>.weight/bias`` tensors of a weights file (`drs pretrain-backbone --extra`) into
    the extra convolutions, by order; False when the file has none (the paper's new, random layers)."""
    by_index: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        parts = str(key).split(".")
        if len(parts) == 3 and parts[0] == "extra" and parts[1].isdigit() and isinstance(value, torch.Tensor):
            by_index.setdefault(int(parts[1]), {})[parts[2]] = value
    if not by_index:
        return False
    targets = [m for m in model.extra if isinstance(m, nn.Conv2d)]
    if len(by_index) != len(targets) or any(isinstance(m, nn.BatchNorm2d) for m in model.extra):
        raise UserError(
            f"weights file {path}: has {len(by_index)} 'extra.*' convolutions; the network has {len(targets)} "
            "extra convolutions, which must be without batch norm (extra_batch_norm: false)"
        )
    with torch.no_grad():
        for (index, tensors), conv in zip(sorted(by_index.items()), targets):
            for name in ("weight", "bias"):
                source = tensors.get(name)
                target = getattr(conv, name)
                if source is None or source.shape != target.shape:
                    got = None if source is None else tuple(source.shape)
                    raise UserError(
                        f"weights file {path}: 'extra.{index}.{name}' has shape {got}; expected {tuple(target.shape)}"
                    )
                target.copy_(source)
    return True


def drs_vgg16(
    num_classes: int,
    *,
    drs: str = "learnable",
    delta: float | None = None,
    width: float = 1.0,
    batch_norm: bool = False,
    stages: int = 5,
    weights: str | os.PathLike | None = None,
    extra_batch_norm: bool = False,
    norm: str = "batch",
) -> DRSClassifier:
    """The paper's DRS classifier on a modified VGG-16.

    Args:
        num_classes: number of class maps / logits (20 for PASCAL VOC; no background class).
        drs: ``"learnable"``, ``"fixed"`` (needs ``delta``) or ``"none"`` (plain CAM network).
        delta: the fixed controller in (0, 1] for ``drs="fixed"``.
        width: scales every channel count (``max(1, round(c * width))``); 1.0 is the paper's network.
        batch_norm: use VGG-16-BN layers in the backbone (batch norm after each conv).
        extra_batch_norm: batch norm in the three extra layers too (not in the paper; it makes the
            last features dense, which DRS's suppression turns into maps flooding the background).
        norm: the layer ``batch_norm`` / ``extra_batch_norm`` put after each convolution:
            ``"batch"`` (BatchNorm2d) or ``"group"`` (GroupNorm, :func:`group_count` groups; per-image
            statistics, the same in training and eval). Either way the convolutions are initialised
            from the same random draws, so a seed gives the same convolutions.
        stages: keep the first 3, 4 or 5 VGG conv stages (see the module docstring for strides).
        weights: None (random init), ``"imagenet"`` (torchvision's ImageNet weights from torch hub's
            cache; never downloaded) or the path of a torchvision-format VGG-16 state dict. Needs
            ``width == 1`` and ``stages == 5`` for ``"imagenet"``; a file must match the network's shapes.
            A ``model.pt`` of ``drs train-classifier`` initialises every layer (batch-norm statistics
            included) but the DRS controllers (:func:`load_classifier_checkpoint`).

    Raises:
        ValueError: bad arguments.
        UserError: the weights cannot be used (missing file, wrong shapes, width/stages mismatch).
    """
    _check_args(num_classes, drs, delta, width, batch_norm, stages, norm)
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights {weights!r}: expected None, 'imagenet' or a file path")
    # torchvision's ImageNet weights are the full network; a file (e.g. `drs pretrain-backbone`'s folded
    # backbone) may hold any width and stages: load_backbone_weights checks every layer's shape
    if isinstance(weights, str) and weights == "imagenet" and (width != 1 or stages != 5):
        raise UserError(
            f"pretrained VGG-16 weights ({weights!r}) need width 1 and stages 5; got width {width}, stages {stages}"
        )
    if isinstance(weights, str) and weights == "imagenet" and norm != "batch" and batch_norm:
        raise UserError(f"pretrained VGG-16 weights ({weights!r}): torchvision has none with norm {norm!r}")
    path = None
    if weights is not None:
        if isinstance(weights, str) and weights == "imagenet":
            path = imagenet_weights_path(batch_norm)
            if not os.path.isfile(path):
                fn = "vgg16_bn" if batch_norm else "vgg16"
                raise UserError(
                    f"ImageNet VGG-16 weights not found at {path} (nothing is downloaded). On a machine with "
                    f"internet run: python -c \"import torchvision; torchvision.models.{fn}(weights='IMAGENET1K_V1')\" "
                    f"and copy the file it writes (under torch hub's checkpoints folder) to {path}, "
                    f"or set TORCH_HOME to a folder holding hub/checkpoints/{os.path.basename(path)}"
                )
        else:
            path = os.fspath(weights)
            if not os.path.isfile(path):
                raise UserError(f"VGG-16 weights file {path}: not found")

    backbone, channels = _backbone(drs, delta, width, batch_norm, stages, norm)
    if not isinstance(extra_batch_norm, bool):
        raise ValueError(f"extra_batch_norm {extra_batch_norm!r}: expected true or false")
    extra, channels = _extra(channels, drs, delta, width, extra_batch_norm, norm)
    classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
    for part in (backbone, extra, classifier):
        _init_layers(part)
    config = {
        "num_classes": num_classes,
        "drs": drs,
        "delta": delta,
        "width": width,
        "batch_norm": batch_norm,
        "stages": stages,
        "extra_batch_norm": extra_batch_norm,
        "norm": norm,
    }
    model = DRSClassifier(backbone, extra, classifier, config, OUTPUT_STRIDE[stages])
    if path is None:
        return model
    loaded = _read_weights_file(path)  # once, for whichever of the loaders below uses it
    imagenet = isinstance(weights, str) and weights == "imagenet"
    checkpoint = None if imagenet else _checkpoint_state(loaded, path)
    if checkpoint is not None:
        load_classifier_checkpoint(model, checkpoint, path)
    else:
        load_backbone_weights(model, path, loaded)
        if not imagenet:
            load_extra_weights(model, loaded, path)
    return model
