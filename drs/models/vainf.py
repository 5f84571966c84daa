"""VainF's DeepLabV3Plus-Pytorch state dicts (the DRS authors' DeepLabV3+): what network they hold.

The authors' DeepLabV3+ checkpoint (``Deeplabv3_pseudo_segmentation_labels.pth``) holds in its
``model_state`` the network's state dict, with ``backbone.*`` (torchvision's ResNet names, no
``fc``), ``classifier.project.*``, ``classifier.aspp.*`` and ``classifier.classifier.*``.
:mod:`drs.models.deeplab` lays its modules out under the same names, so the state dict loads
strictly; the backbone (ResNet-18/50/101) and the class count are read from the tensors' shapes
(:func:`infer_network`), and :func:`first_misfit` names the first key that does not fit.
"""

from __future__ import annotations

from pathlib import Path

from drs.errors import UserError

STATE_KEY = "model_state"


def infer_network(state: dict, src: Path) -> dict:
    """``backbone`` and ``num_classes`` of a VainF-layout state dict, from its tensors."""
    head = "classifier.classifier.3.weight"
    if head not in state:
        raise UserError(f"{src}: first bad key '{head}': missing (not a DeepLabV3+ head in VainF's layout)")
    blocks = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    bottleneck = any(k.startswith("backbone.layer1.0.conv3.") for k in state)
    backbone = {(False, 2): "resnet18", (True, 6): "resnet50", (True, 23): "resnet101"}.get((bottleneck, len(blocks)))
    if backbone is None:
        raise UserError(
            f"{src}: backbone with {len(blocks)} blocks in layer3 ({'bottleneck' if bottleneck else 'basic'} blocks) "
            "is none of resnet18, resnet50, resnet101"
        )
    return {"backbone": backbone, "num_classes": int(state[head].shape[0])}


def first_misfit(model_state: dict, state: dict) -> str | None:
    """A description of the first key that differs between our model's and a file's state dict:
    missing from the file, of another shape, or not in our model."""
    for key, value in model_state.items():
        if key not in state:
            return f"'{key}': missing from the checkpoint"
        if tuple(state[key].shape) != tuple(value.shape):
            return f"'{key}': shape {tuple(state[key].shape)} in the checkpoint, {tuple(value.shape)} in the model"
    for key in state:
        if key not in model_state:
            return f"'{key}': not in the model"
    return None
