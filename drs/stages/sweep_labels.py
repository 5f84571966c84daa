"""Score a map store's pseudo labels over a grid of background thresholds (alpha, the saliency
threshold at its configured value) and a grid of saliency thresholds (alpha at its configured
value), in one pass over the store and without writing labels: mIoU and pixel accuracy under both
scorings (ours, with the ignore steps; the reference's, every pixel counted), and the best value of
each threshold under each. The rule's settings come as --settings (the config's `pseudo_labels:`
section); a flag per key overrides it. Grids: --alphas 0.1,0.2,... (default 0.05 to 0.60 in steps
of 0.05), --saliency-thresholds 20,40,... (grey levels on 0-255; default 20 to 240 in steps of 20);
the configured value is always scored."""

from __future__ import annotations

import json
import time

from drs.config.arguments import add_rule_arguments, rule_settings
from drs.labels.sweep import ALPHA_OPTION, SALIENCY_OPTION, parse_grid, summary_lines, sweep_store
from drs.util.argtypes import positive_int
from drs.util.files import atomic_write_text, check_outside_dataset


def add_arguments(p) -> None:
    p.add_argument("store", help="HDF5 map store (the one `drs pseudo-labels` makes the labels from)")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    p.add_argument("--split", help="the store's split (checked; default: the store's)")
    p.add_argument("--out", help="write the sweep JSON here")
    add_rule_arguments(p)
    p.add_argument(ALPHA_OPTION, metavar="A,B,...", help="alphas to score, each in (0, 1)")
    p.add_argument(SALIENCY_OPTION, metavar="T,U,...", help="saliency thresholds to score (grey levels, 0-255)")
    p.add_argument("--workers", type=positive_int, help="processes (default: all usable cores)")


def run(args) -> int:
    if args.out:
        check_outside_dataset(args.out, args.dataset)
    alphas = parse_grid(args.alphas, ALPHA_OPTION) if args.alphas is not None else None
    thresholds = parse_grid(args.saliency_thresholds, SALIENCY_OPTION) if args.saliency_thresholds is not None else None
    start = time.perf_counter()
    result = sweep_store(
        args.store, args.dataset, args.split, rule_settings(args), alphas, thresholds, workers=args.workers
    )
    seconds = time.perf_counter() - start
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"{result['num_images']} images of {args.store} swept in {seconds:.2f} s")
    for line in summary_lines(result):
        print(line)
    return 0
