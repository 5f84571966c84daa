"""Generate a classification corpus (32 classes: outline x texture, random colours, no part cue) in
VOC layout with image-level labels, for pretraining the backbone as ImageNet does for the paper."""

from __future__ import annotations

from drs.data.corpus import generate


def add_arguments(p) -> None:
    p.add_argument("out", help="output folder (must not exist)")
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    generate(args.out, args.num_images, args.image_size, args.seed)
    return 0
