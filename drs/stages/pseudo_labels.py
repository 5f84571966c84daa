"""Turn every image of a map store into its pseudo label the paper's way (object cues above alpha,
background from 1 - saliency or a constant threshold, conflicts and salient background ignored) and
write them as VOC palette PNGs (255 = ignore), one per image, into a folder that is replaced whole
when complete. The config's `pseudo_labels:` section comes as --settings; a flag per key overrides it."""

from __future__ import annotations

from drs.config.arguments import add_rule_arguments, rule_settings
from drs.labels.writer import generate_pseudo_labels
from drs.util.argtypes import positive_int


def add_arguments(p) -> None:
    p.add_argument("store", help="HDF5 map store")
    p.add_argument("--out", required=True, help="output folder (<id>.png per image)")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    add_rule_arguments(p)
    p.add_argument("--workers", type=positive_int, help="processes (default: all usable cores)")


def run(args) -> int:
    done = generate_pseudo_labels(args.store, args.out, args.dataset, rule_settings(args), args.workers)
    print(
        f"wrote {done['num_images']} pseudo labels to {done['out']}: {100 * done['ignored_fraction']:.1f}% of pixels "
        f"ignored; {done['images_per_s']:.1f} images/s (workers: {done['workers']})"
    )
    return 0
