"""The DRS authors' DeepLabV3+ checkpoint as a ``model.pt`` of ours (stage 6 without training).

The authors release the DeepLabV3+ they trained on their refined pseudo labels
(``Deeplabv3_pseudo_segmentation_labels.pth``) in the format of VainF's DeepLabV3Plus-Pytorch, which
they vendor: a dict whose ``model_state`` is the network's state dict, with ``backbone.*``
(torchvision's ResNet names, no ``fc``), ``classifier.project.*``, ``classifier.aspp.*`` and
``classifier.classifier.*``. :mod:`drs.models.deeplab` lays its modules out under the same names,
so the state dict loads strictly; :func:`import_segmenter` checks every key and shape first and
names the first one that does not fit. The backbone (ResNet-18/50/101) and the class count are read
from the tensors' shapes; the output stride is not in the weights (the authors train at 16, their
``run.sh``'s default).
"""

from __future__ import annotations

import logging
from pathlib import Path

from drs.errors import UserError
from drs.fileio import file_sha256

log = logging.getLogger("drs.segmenter_weights")

STATE_KEY = "model_state"


def read_vainf_checkpoint(src: str | Path) -> dict:
    """The ``model_state`` state dict of a VainF-format checkpoint, read with ``weights_only=True``.

    Their training script stores ``best_score`` as a NumPy float beside the weights; NumPy scalars
    (and nothing else beyond the safe defaults) are allowed for that."""
    import numpy as np
    import torch

    src = Path(src)
    if not src.is_file():
        raise UserError(f"{src}: checkpoint not found")
    numpy_scalars = [np.dtype, np.float64, np.float32, type(np.dtype("float64")), type(np.dtype("float32"))]
    numpy_scalars.append(np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar)
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"{src}: not a readable PyTorch checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(STATE_KEY), dict):
        keys = sorted(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise UserError(f"{src}: expected a dict with '{STATE_KEY}' (VainF's DeepLabV3Plus-Pytorch format), got {keys}")
    return checkpoint[STATE_KEY]


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


def import_segmenter(
    src: str | Path, out: str | Path, output_stride: int = 16, class_names: list[str] | None = None
) -> Path:
    """Load a VainF-format DeepLabV3+ checkpoint strictly into our network and write ``OUT/model.pt``
    (:func:`drs.train.save_model`), with the source's path and SHA-256 in its record.

    ``class_names`` default to PASCAL VOC's 21 for a 21-class head; another class count needs them.
    """
    import torch

    from drs.data.voc import VOC_CLASSES
    from drs.models.deeplab import deeplabv3plus
    from drs.train import save_model

    src, out = Path(src), Path(out)
    state = read_vainf_checkpoint(src)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{src}: first bad key '{bad[0]}': not a tensor")
    network = infer_network(state, src)
    if class_names is None:
        if network["num_classes"] != len(VOC_CLASSES):
            raise UserError(
                f"{src}: a {network['num_classes']}-class head; give its class names (PASCAL VOC has {len(VOC_CLASSES)})"
            )
        class_names = list(VOC_CLASSES)
    if len(class_names) != network["num_classes"]:
        raise UserError(f"{src}: {network['num_classes']} classes in the head, {len(class_names)} class names given")
    model = deeplabv3plus(network["num_classes"], network["backbone"], output_stride)
    misfit = first_misfit(model.state_dict(), state)
    if misfit is not None:
        raise UserError(f"{src}: does not fit DeepLabV3+ ({network['backbone']}): first bad key {misfit}")
    model.load_state_dict(state, strict=True)
    digest = file_sha256(src)
    record = {
        "kind": "segmenter",
        "model_config": model.config,
        "settings": {},
        "class_names": list(class_names),
        "supervision": "image",
        "labels": "the authors' (imported checkpoint)",
        "imported_from": str(src),
        "source_sha256": digest,
        "source_format": "VainF DeepLabV3Plus-Pytorch (model_state)",
    }
    out.mkdir(parents=True, exist_ok=True)
    path = save_model(model, record, out)
    log.info("imported %s (sha256 %s) as %s", src, digest, path)
    return path
