"""The DRS authors' released checkpoints as our ``model.pt`` (``drs import-weights KIND SRC OUT``).

The classifier (``DRS_learnable.pth``, or a fixed-delta one) and the refiner
(``Refine_DRS_learnable.pth``) in the layout of the reference's VGG (:mod:`drs.models.reference_vgg`),
and the DeepLabV3+ (``Deeplabv3_pseudo_segmentation_labels.pth``) in VainF's
(:mod:`drs.models.vainf`). Each is loaded into our network, refused naming the first key or shape
that does not fit, and written with :func:`drs.store.model_files.save_model`, the source file's path
and SHA-256 in its record. ``IMPORTERS`` maps each KIND to its function ``(src, out, **options) ->
Path``; a new kind adds one entry there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drs.data.voc import VOC_CLASSES, read_class_names
from drs.errors import UserError
from drs.models.deeplab import deeplabv3plus
from drs.models.deeplabv2 import deeplabv2, infer_deeplabv2, reference_state
from drs.models.reference_vgg import REFERENCE_CLASSIFIER, from_reference_state, reference_num_classes
from drs.models.vainf import STATE_KEY, first_misfit, infer_network
from drs.models.weights_file import read_weights_file
from drs.store.model_files import save_model
from drs.util.files import file_sha256

log = logging.getLogger("drs.import_weights")


def read_checkpoint(src: Path, safe_globals=()) -> Any:
    """What an authors' checkpoint file holds; a UserError naming it when missing or unreadable."""
    return read_weights_file(src, str(src), "checkpoint not found", "not a readable PyTorch checkpoint", safe_globals)


def read_reference_state(src: str | Path) -> dict[str, Any]:
    """The state dict inside a reference checkpoint (``{"model": ...}``, or a bare state dict);
    a ``module.`` prefix (DataParallel) is dropped."""
    src = Path(src)
    checkpoint = read_checkpoint(src)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise UserError(f"{src}: expected a dict with 'model' holding the reference VGG's state dict")
    out = {}
    for key, value in state.items():
        key = str(key)
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def _import(kind: str, src, out, drs: str, delta: float | None, dataset=None) -> Path:
    src = Path(src)
    out = Path(out)
    state = read_reference_state(src)
    num_classes = reference_num_classes(state, src)
    if dataset is not None:
        names = list(read_class_names(dataset))
    else:
        names = list(VOC_CLASSES) if num_classes == len(VOC_CLASSES) - 1 else None
    if names is None or len(names) != num_classes + 1:
        have = "no class names given" if names is None else f"{len(names) - 1} classes named"
        raise UserError(
            f"{src}: '{REFERENCE_CLASSIFIER}.weight' has {num_classes} classes but {have}; pass --dataset ROOT"
        )
    model = from_reference_state(state, src, drs=drs, delta=delta)
    record = {
        "kind": kind,
        "model_config": model.config,
        "class_names": names,
        "imported_from": str(src),
        "source_sha256": file_sha256(src),
        "source_format": "qjadud1994/DRS " + ("models/vgg_refine.py" if kind == "refiner" else "models/vgg.py"),
    }
    if kind == "classifier":
        record.update(drs=drs, delta=delta)
    out.mkdir(parents=True, exist_ok=True)
    path = save_model(model, record, out)
    log.info("imported %s %s (sha256 %s) as %s", kind, src, record["source_sha256"], path)
    return path


def import_classifier(src, out, drs: str = "learnable", delta: float | None = None, dataset=None) -> Path:
    """The reference's DRS classifier (``DRS_learnable.pth``, or a fixed-delta one with
    ``drs="fixed"``, ``delta``) as ``OUT/model.pt`` of kind ``classifier``."""
    if drs not in ("learnable", "fixed"):
        raise UserError(f"--drs {drs}: the reference classifier has learnable or fixed DRS modules")
    return _import("classifier", src, out, drs, delta if drs == "fixed" else None, dataset)


def import_refiner(src, out, drs: str = "none", delta: float | None = None, dataset=None) -> Path:
    """The reference's refinement network (``Refine_DRS_learnable.pth``) as ``OUT/model.pt`` of kind ``refiner``."""
    if drs != "none" or delta is not None:
        raise UserError("the refiner has no DRS modules: --drs and --delta apply to KIND classifier only")
    return _import("refiner", src, out, "none", None, dataset)


def head_class_names(src: Path, num_classes: int, class_names: list[str] | None) -> list[str]:
    """The class names of a segmenter's ``num_classes``-class head: ``class_names``, or PASCAL VOC's
    21 for a 21-class head (a UserError naming ``src`` otherwise)."""
    if class_names is None:
        if num_classes != len(VOC_CLASSES):
            raise UserError(
                f"{src}: a {num_classes}-class head; give its class names (PASCAL VOC has {len(VOC_CLASSES)})"
            )
        return list(VOC_CLASSES)
    if len(class_names) != num_classes:
        raise UserError(f"{src}: {num_classes} classes in the head, {len(class_names)} class names given")
    return list(class_names)


def read_vainf_checkpoint(src: str | Path) -> dict:
    """The ``model_state`` state dict of a VainF-format checkpoint, read with ``weights_only=True``.

    Their training script stores ``best_score`` as a NumPy float beside the weights; NumPy scalars
    (and nothing else beyond the safe defaults) are allowed for that."""
    src = Path(src)
    numpy_scalars = [np.dtype, np.float64, np.float32, type(np.dtype("float64")), type(np.dtype("float32"))]
    numpy_scalars.append(np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar)
    checkpoint = read_checkpoint(src, safe_globals=numpy_scalars)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(STATE_KEY), dict):
        keys = sorted(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise UserError(f"{src}: expected a dict with '{STATE_KEY}' (VainF's DeepLabV3Plus-Pytorch format), got {keys}")
    return checkpoint[STATE_KEY]


def import_vainf_segmenter(
    src: str | Path, out: str | Path, output_stride: int = 16, class_names: list[str] | None = None
) -> Path:
    """Load a VainF-format DeepLabV3+ checkpoint strictly into our network and write ``OUT/model.pt``
    (:func:`drs.store.model_files.save_model`), with the source's path and SHA-256 in its record.

    ``class_names`` default to PASCAL VOC's 21 for a 21-class head; another class count needs them.
    """
    src, out = Path(src), Path(out)
    state = read_vainf_checkpoint(src)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{src}: first bad key '{bad[0]}': not a tensor")
    network = infer_network(state, src)
    class_names = head_class_names(src, network["num_classes"], class_names)
    model = deeplabv3plus(network["num_classes"], network["backbone"], output_stride)
    misfit = first_misfit(model.state_dict(), state)
    if misfit is not None:
        raise UserError(f"{src}: does not fit DeepLabV3+ ({network['backbone']}): first bad key {misfit}")
    return _save_imported_segmenter(model, state, class_names, src, out, "VainF DeepLabV3Plus-Pytorch (model_state)")


def import_deeplabv2(src: str | Path, out: str | Path, class_names: list[str] | None = None) -> Path:
    """The authors' DeepLab-V2 (their DeepLab-V2-PyTorch ``checkpoint_final.pth``, released as
    ``Deeplabv2_pseudo_segmentation_labels.pth``: a state dict of the multi-scale model) as
    ``OUT/model.pt`` of kind ``segmenter``. The keys are ours (:mod:`drs.models.deeplabv2`), a
    ``module.`` prefix dropped; the backbone, width and classes come from the tensors' shapes; batch
    norm's ``num_batches_tracked`` may be absent. Any other misfit names the first key."""
    src, out = Path(src), Path(out)
    state = read_checkpoint(src)
    if isinstance(state, dict) and isinstance(state.get("model_state"), dict):
        raise UserError(
            f"{src}: a VainF DeepLabV3+ checkpoint (model_state); import it with --architecture deeplabv3plus"
        )
    if not isinstance(state, dict) or not state:
        raise UserError(f"{src}: expected the state dict of the reference's DeepLab-V2 (MSC)")
    state = reference_state(state)
    if not any(k.startswith("base.") for k in state):  # the base network's state dict alone
        state = {f"base.{k}": v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{src}: first bad key '{bad[0]}': not a tensor")
    network = infer_deeplabv2(state, str(src))
    class_names = head_class_names(src, network["num_classes"], class_names)
    model = deeplabv2(**network)
    expected = model.state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    misfit = first_misfit(expected, state)
    if misfit is not None:
        raise UserError(f"{src}: does not fit DeepLab-V2 ({network['backbone']}): first bad key {misfit}")
    return _save_imported_segmenter(
        model, state, class_names, src, out, "qjadud1994/DRS DeepLab-V2-PyTorch (DeepLabV2_ResNet101_MSC state dict)"
    )


def import_segmenter(
    src,
    out,
    drs: str = "none",
    delta: float | None = None,
    dataset=None,
    output_stride: int = 16,
    architecture: str = "deeplabv3plus",
) -> Path:
    """The authors' segmenter as ``OUT/model.pt`` of kind ``segmenter``: their DeepLabV3+
    (``Deeplabv3_pseudo_segmentation_labels.pth``, VainF's format: :func:`import_vainf_segmenter`)
    or, with ``architecture="deeplabv2"``, their DeepLab-V2 (:func:`import_deeplabv2`)."""
    if drs != "none" or delta is not None:
        raise UserError("a segmenter has no DRS modules: --drs and --delta apply to KIND classifier only")
    names = list(read_class_names(dataset)) if dataset is not None else None
    if architecture == "deeplabv2":
        return import_deeplabv2(src, out, class_names=names)
    if architecture != "deeplabv3plus":
        raise UserError(f"--architecture {architecture}: expected deeplabv3plus or deeplabv2")
    return import_vainf_segmenter(src, out, output_stride=output_stride, class_names=names)


IMPORTERS: dict[str, Callable[..., Path]] = {
    "classifier": import_classifier,
    "refiner": import_refiner,
    "segmenter": import_segmenter,
}


def _save_imported_segmenter(model, state: dict, class_names, src: Path, out: Path, source_format: str) -> Path:
    """Load ``state`` strictly into ``model`` and write it as OUT/model.pt with the record of an
    imported segmenter (its source file's SHA-256 and format)."""
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
        "source_format": source_format,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = save_model(model, record, out)
    log.info("imported %s (sha256 %s) as %s", src, digest, path)
    return path
