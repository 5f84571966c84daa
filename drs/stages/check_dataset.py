"""Validate a dataset folder in PASCAL VOC layout: missing or undecodable files, mask/image size
mismatches, label values out of range, ids listed but absent. Names every bad file; exits 1 when
any is found."""

from __future__ import annotations

import argparse
import json

from drs.config.arguments import rule_settings
from drs.config.settings import MISSING_SALIENCY_MODES, SALIENCY_MODES, PseudoLabelSettings
from drs.data.check import check_dataset
from drs.util.argtypes import positive_int
from drs.util.files import atomic_write_text


def add_arguments(p) -> None:
    p.add_argument("root", help="dataset folder")
    p.add_argument("--splits", nargs="+", help="split lists to check (default: every list)")
    p.add_argument("--json", dest="json_out", help="also write the report as JSON to this file")
    p.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    p.add_argument(
        "--settings",
        metavar="JSON",
        help="the config's `pseudo_labels:` section as JSON: check the saliency maps as the pseudo labels use them "
        "(its saliency and missing_saliency)",
    )
    p.add_argument(
        "--saliency",
        choices=SALIENCY_MODES,
        default=argparse.SUPPRESS,
        help="as in pseudo-labels: saliency_map needs a saliency map per listed image, none checks none "
        "(default: that of --settings, else check those of a saliency_map folder, if any)",
    )
    p.add_argument(
        "--missing-saliency",
        choices=MISSING_SALIENCY_MODES,
        default=argparse.SUPPRESS,
        help="a missing saliency map: a problem (error), or a warning (threshold); default: that of --settings",
    )


def _saliency_options(args) -> tuple[str | None, str]:
    """(saliency, missing_saliency) of the arguments: the flags, else the --settings section's,
    else None (check the maps there are) and the schema's missing_saliency."""
    rule = PseudoLabelSettings() if args.settings is None else rule_settings(args)
    saliency = getattr(args, "saliency", None if args.settings is None else rule.saliency)
    return saliency, getattr(args, "missing_saliency", rule.missing_saliency)


def run(args) -> int:
    saliency, missing_saliency = _saliency_options(args)
    report = check_dataset(args.root, args.splits, args.workers, saliency, missing_saliency)
    for problem in report.problems:
        print(problem)
    for warning in report.warnings:
        print(f"warning: {warning}")
    split_text = ", ".join(f"{k} {v}" for k, v in report.splits.items()) or "none"
    print(
        f"{report.root}: {len(report.class_names) - 1} classes, splits: {split_text}; "
        f"masks: {report.mask_dir or 'none'}, "
        f"saliency: {'not used' if saliency == 'none' else 'yes' if report.has_saliency else 'no'}, "
        f"part masks: {'yes' if report.has_parts else 'no'}; "
        + ("OK" if report.ok else f"{len(report.problems)} problem(s)")
    )
    if args.json_out:
        if not report.ok:
            return 1  # a failed check publishes no report: later stages must not start
        atomic_write_text(args.json_out, json.dumps(report.to_json(), indent=2) + "\n")
    return 0 if report.ok else 1
