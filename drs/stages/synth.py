"""Generate the synthetic dataset (deterministic from its seed) in PASCAL VOC layout, with saliency
maps and discriminative-part masks."""

from __future__ import annotations

from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.util.files import json_object


def add_arguments(p) -> None:
    p.add_argument("out", help="output folder (must not exist)")
    p.add_argument("--spec", help="generator settings as JSON (the config's `synthetic:` section)")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--num-train", type=int, help="override the number of training images")
    p.add_argument("--num-val", type=int, help="override the number of validation images")
    p.add_argument("--image-size", type=int, help="override the image size (pixels)")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")


def run(args) -> int:
    values = json_object(args.spec, "--spec") if args.spec else {}
    for key in ("seed", "num_train", "num_val", "image_size"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    generate(args.out, SynthSpec.from_dict(values), workers=args.workers)
    return 0
