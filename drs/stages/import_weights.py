"""Convert a checkpoint of the reference code (qjadud1994/DRS: DRS_learnable.pth,
Refine_DRS_learnable.pth; the DeepLabV3+ Deeplabv3_pseudo_segmentation_labels.pth; with --architecture
deeplabv2 their DeepLab-V2 checkpoint_final.pth, Deeplabv2_pseudo_segmentation_labels.pth) into OUT/model.pt,
usable by extract-maps, evaluate and the workflow. Refuses, naming the first bad key, anything whose
keys or shapes do not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drs.errors import UserError
from drs.store.authors import IMPORTERS
from drs.store.model_files import MODEL_FILE


def add_arguments(p) -> None:
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
    p.add_argument(
        "--architecture",
        choices=["deeplabv3plus", "deeplabv2"],
        default="deeplabv3plus",
        help="segmenter: the authors' DeepLabV3+ (VainF's format, the default) or DeepLab-V2 (DeepLab-V2-PyTorch's)",
    )


def run(args) -> int:
    options: dict[str, Any] = {"dataset": args.dataset}
    if args.kind == "classifier":
        options.update(drs=args.drs or "learnable", delta=args.delta)
    elif args.drs is not None or args.delta is not None:
        raise UserError(f"--drs and --delta apply to KIND classifier only, not {args.kind}")
    if args.kind == "segmenter":
        options.update(output_stride=args.output_stride, architecture=args.architecture)
    elif args.architecture != "deeplabv3plus":
        raise UserError(f"--architecture applies to KIND segmenter only, not {args.kind}")
    existing = Path(args.out) / MODEL_FILE
    if existing.exists() and not args.replace:  # e.g. a model trained here: never overwritten silently
        raise UserError(f"{existing}: exists; pass --replace to overwrite it, or pick another OUT")
    path = IMPORTERS[args.kind](args.src, args.out, **options)
    print(f"wrote {path}")
    return 0
