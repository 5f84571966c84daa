"""The `drs` command: one subcommand per pipeline stage.

Each stage module exposes ``add_parser(subparsers)``, which registers its subcommand and sets
``func`` (called with the parsed arguments, returning an exit code). Heavy imports (torch, h5py)
happen inside the stage functions so that ``drs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from drs import __version__
from drs.errors import UserError, user_message
from drs.workers import Terminated, sigterm_raises

# Stage modules, in pipeline order.
STAGE_MODULES = [
    "drs.data.synth",
    "drs.data.corpus",
    "drs.data.download",
    "drs.data.check",
    "drs.config",
    "drs.classifier",
    "drs.pretrain",
    "drs.extract",
    "drs.eval_maps",
    "drs.pseudo_labels",
    "drs.score_labels",
    "drs.refiner",
    "drs.import_weights",
    "drs.segmenter",
    "drs.evaluate",
    "drs.maps",
    "drs.compare",
    "drs.compare_labels",
    "drs.report",
    "drs.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drs",
        description="Discriminative Region Suppression (DRS) for weakly-supervised semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"drs-wsss {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in STAGE_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone logs progress
        logging.getLogger("drs").setLevel(logging.WARNING)
    try:
        with sigterm_raises():  # SIGTERM runs the clean-ups: partial output removed, workers ended
            return int(args.func(args) or 0)
    except UserError as err:
        print(f"drs {args.command}: error: {user_message(err)}", file=sys.stderr)
        return 2
    except Terminated as stop:
        print(f"drs {args.command}: terminated (SIGTERM); partial output removed", file=sys.stderr)
        return int(stop.code)
    finally:
        if "drs.distributed" in sys.modules:  # a stage run under torchrun leaves its process group
            sys.modules["drs.distributed"].cleanup()
