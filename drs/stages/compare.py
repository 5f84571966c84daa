"""Compare experiments' localization maps: a markdown table and a picture.

Experiments whose names differ only by a trailing ``_s<seed>`` are one variant run with several
seeds: the table gives each variant's mean and spread (sample standard deviation) over its seeds,
then one row per run. The picture shows, for a few images, the image, its ground truth, and each
variant's map (the maximum over the image's classes) over the image, so one can see where the maps
lie: on the discriminative part or over the whole object.
"""

from __future__ import annotations

from drs.errors import UserError
from drs.report.compare import comparison_figure, comparison_table, load_run
from drs.util.argtypes import name_value_pairs
from drs.util.files import atomic_save_image, atomic_write_text


def add_arguments(p) -> None:
    p.add_argument("--runs", nargs="+", required=True, help="NAME=METRICS_JSON for each run (cam.json)")
    p.add_argument("--out", required=True, help="markdown table to write")
    p.add_argument("--stores", nargs="*", default=[], help="NAME=STORE for the picture (one per variant)")
    p.add_argument("--figure", help="PNG to write the picture to")
    p.add_argument("--images", type=int, default=6, help="images in the picture")


def run(args) -> int:
    runs = {name: load_run(path) for name, path in name_value_pairs(args.runs, "--runs")}
    table = comparison_table(runs)
    atomic_write_text(args.out, table)
    print(table)
    if args.figure:
        if not args.stores:
            raise UserError("--figure needs --stores NAME=STORE ...")
        stores = dict(name_value_pairs(args.stores, "--stores"))
        atomic_save_image(args.figure, comparison_figure(stores, count=args.images))
        print(f"wrote {args.figure}")
    return 0
