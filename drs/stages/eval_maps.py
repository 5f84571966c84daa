"""Turn a map store into pseudo labels the paper's way and score them against the ground truth: mIoU
with the saliency background and with a background threshold, and the maps' coverage of parts, rest
of objects and background (datasets with part masks). The config's `pseudo_labels:` section comes as
--settings; a flag per key overrides it."""

from __future__ import annotations

import json

from drs.config.arguments import add_rule_arguments, rule_settings
from drs.labels.scoring import evaluate_store, summary_line, with_protocols
from drs.util.files import atomic_write_text


def add_arguments(p) -> None:
    p.add_argument("store", help="HDF5 map store")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    add_rule_arguments(p)


def run(args) -> int:
    settings = rule_settings(args)
    result = with_protocols(evaluate_store(args.store, args.dataset, settings), settings, args.dataset, args.store)
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(summary_line(result))
    return 0
