"""`drs import-weights KIND SRC OUT`: the DRS authors' released checkpoints as our `model.pt`.

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
at width 1 (or the width that the first convolution's 64 x width filters tell), 5 stages, no batch norm), which computes the same class maps (the reference's
``extra_conv4`` output, before its ReLU / upsampling). Anything else, a missing tensor, or a
shape that does not fit is refused, naming the first such key. The output is written with
:func:`drs.train.save_model` and records the source file's SHA-256.

``IMPORTERS`` maps each KIND to its function ``(src, out, **options) -> Path``; a new kind adds one
entry there (and its options to :func:`add_parser`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drs.errors import UserError

log = logging.getLogger("drs.import_weights")

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


def read_reference_state(src: str | Path) -> dict[str, Any]:
    """The state dict inside a reference checkpoint (``{"model": ...}``, or a bare state dict);
    a ``module.`` prefix (DataParallel) is dropped."""
    import torch

    src = Path(src)
    if not src.is_file():
        raise UserError(f"{src}: checkpoint not found")
    try:
        checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"{src}: not a readable PyTorch checkpoint ({err})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise UserError(f"{src}: expected a dict with 'model' holding the reference VGG's state dict")
    out = {}
    for key, value in state.items():
        key = str(key)
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def _mapping(model, drs: str) -> list[tuple[str, Any]]:
    """(reference key, our tensor) for every tensor of ``model``, in order."""
    from torch import nn

    from drs.models.drs import DRS

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


def convert_state(
    state: Mapping[str, Any], src: str | Path, *, drs: str, delta: float | None, class_names: list[str] | None
):
    """Our DRSClassifier holding the reference tensors of ``state``; UserError names the first misfit."""
    import torch

    from drs.data.voc import VOC_CLASSES
    from drs.models.vgg import drs_vgg16

    head = state.get(f"{REFERENCE_CLASSIFIER}.weight")
    if not isinstance(head, torch.Tensor) or head.dim() != 4:
        raise UserError(
            f"{src}: key '{REFERENCE_CLASSIFIER}.weight' missing or not a 4-d tensor: not a reference DRS VGG-16"
        )
    num_classes = int(head.shape[0])
    names = list(class_names) if class_names is not None else (list(VOC_CLASSES) if num_classes == 20 else None)
    if names is None or len(names) != num_classes + 1:
        have = "no class names given" if names is None else f"{len(names) - 1} classes named"
        raise UserError(
            f"{src}: '{REFERENCE_CLASSIFIER}.weight' has {num_classes} classes but {have}; pass --dataset ROOT"
        )
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
    return model, names


def _import(kind: str, src, out, drs: str, delta: float | None, dataset=None) -> Path:
    from drs.data.voc import read_class_names
    from drs.fileio import file_sha256
    from drs.train import save_model

    src = Path(src)
    out = Path(out)
    state = read_reference_state(src)
    class_names = list(read_class_names(dataset)) if dataset is not None else None
    model, names = convert_state(state, src, drs=drs, delta=delta, class_names=class_names)
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


def import_segmenter(
    src, out, drs: str = "none", delta: float | None = None, dataset=None, output_stride: int = 16
) -> Path:
    """The authors' DeepLabV3+ (``Deeplabv3_pseudo_segmentation_labels.pth``, VainF's format) as
    ``OUT/model.pt`` of kind ``segmenter`` (:func:`drs.segmenter_weights.import_segmenter`)."""
    from drs.data.voc import read_class_names
    from drs.segmenter_weights import import_segmenter as convert

    if drs != "none" or delta is not None:
        raise UserError("DeepLabV3+ has no DRS modules: --drs and --delta apply to KIND classifier only")
    names = list(read_class_names(dataset)) if dataset is not None else None
    return convert(src, out, output_stride=output_stride, class_names=names)


IMPORTERS: dict[str, Callable[..., Path]] = {
    "classifier": import_classifier,
    "refiner": import_refiner,
    "segmenter": import_segmenter,
}


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "import-weights",
        help="convert the DRS authors' released checkpoints into this project's model.pt",
        description="Convert a checkpoint of the reference code (qjadud1994/DRS: DRS_learnable.pth, "
        "Refine_DRS_learnable.pth; the DeepLabV3+ Deeplabv3_pseudo_segmentation_labels.pth) into OUT/model.pt, "
        "usable by extract-maps, evaluate and the workflow. Refuses, "
        "naming the first bad key, anything whose keys or shapes do not fit.",
    )
    p.add_argument("kind", metavar="KIND", choices=sorted(IMPORTERS), help=f"one of {', '.join(sorted(IMPORTERS))}")
    p.add_argument("src", metavar="SRC", help="the reference checkpoint (.pth)")
    p.add_argument("out", metavar="OUT", help="output folder (OUT/model.pt)")
    p.add_argument("--drs", choices=["learnable", "fixed"], help="classifier: the DRS kind (default learnable)")
    p.add_argument("--delta", type=float, help="classifier with --drs fixed: its delta")
    p.add_argument("--dataset", help="dataset folder whose class names to record (default: VOC's 20 classes)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing OUT/model.pt")
    p.add_argument(
        "--output-stride",
        type=int,
        choices=[8, 16],
        default=16,
        help="segmenter: the output stride to build the network with (default 16, the reference's)",
    )
    p.set_defaults(func=_run)


def _run(args) -> int:
    options: dict[str, Any] = {"dataset": args.dataset}
    if args.kind == "classifier":
        options.update(drs=args.drs or "learnable", delta=args.delta)
    elif args.drs is not None or args.delta is not None:
        raise UserError(f"--drs and --delta apply to KIND classifier only, not {args.kind}")
    if args.kind == "segmenter":
        options.update(output_stride=args.output_stride)
    existing = Path(args.out) / "model.pt"
    if existing.exists() and not args.replace:  # e.g. a model trained here: never overwritten silently
        raise UserError(f"{existing}: exists; pass --replace to overwrite it, or pick another OUT")
    path = IMPORTERS[args.kind](args.src, args.out, **options)
    print(f"wrote {path}")
    return 0
