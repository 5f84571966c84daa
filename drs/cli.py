"""The `drs` command: one subcommand per pipeline stage.

:data:`COMMANDS` is the command table, the one place that maps each subcommand to its stage module
(``drs/stages/<name>.py``) and its one-line help. A stage module's docstring is its description, and
it has ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code). Only the module of the
command being run is imported, so ``drs --help`` lists every command without loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from types import ModuleType

from drs import __version__
from drs.errors import UserError, user_message
from drs.util.processes import Terminated, sigterm_raises

#: subcommand -> (stage module, one-line help), in pipeline order
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("drs.stages.synth", "generate the embedded synthetic dataset in VOC layout"),
    "corpus": ("drs.stages.corpus", "generate the embedded classification corpus that pretrains the backbone"),
    "download": (
        "drs.stages.download",
        "download, verify and extract PASCAL VOC 2012 + SBD SegmentationClassAug + saliency maps",
    ),
    "check-dataset": ("drs.stages.check_dataset", "validate a folder in PASCAL VOC layout"),
    "check-config": ("drs.stages.check_config", "check a workflow config file (YAML syntax, schema, cross-key rules)"),
    "train-classifier": (
        "drs.stages.train_classifier",
        "train the VGG-16 classifier with DRS modules on image-level labels",
    ),
    "pretrain-backbone": (
        "drs.stages.pretrain_backbone",
        "pretrain the classifier's network on the embedded corpus and fold its batch norm",
    ),
    "extract-maps": (
        "drs.stages.extract_maps",
        "write a classifier's (or refiner's) localization maps to an HDF5 map store",
    ),
    "eval-maps": (
        "drs.stages.eval_maps",
        "score a map store's pseudo labels against ground truth (mIoU, coverage)",
    ),
    "pseudo-labels": ("drs.stages.pseudo_labels", "write a map store's pseudo labels as PNGs (the paper's rule)"),
    "score-labels": ("drs.stages.score_labels", "score a folder of label PNGs against the ground truth (mIoU)"),
    "sweep-labels": (
        "drs.stages.sweep_labels",
        "score a map store's pseudo labels over grids of alpha and the saliency threshold (one pass)",
    ),
    "train-refiner": ("drs.stages.train_refiner", "train the refinement network on a classifier's map store"),
    "import-weights": (
        "drs.stages.import_weights",
        "convert the DRS authors' released checkpoints into this project's model.pt",
    ),
    "train-segmenter": ("drs.stages.train_segmenter", "train DeepLabV3+ on pseudo labels (or ground-truth masks)"),
    "evaluate": (
        "drs.stages.evaluate",
        "predict a split with a trained DeepLabV3+ and score it (mIoU, per-class IoU, pixel accuracy)",
    ),
    "inspect": ("drs.stages.inspect", "summarise a map store, or draw one image's maps"),
    "compare": ("drs.stages.compare", "compare experiments' maps: a markdown table and a picture"),
    "compare-labels": (
        "drs.stages.compare_labels",
        "pixel agreement and mIoU of one folder of label PNGs against another",
    ),
    "report": ("drs.stages.report", "tables, a per-class chart, picture strips and a markdown summary of a run"),
    "bench": (
        "drs.stages.bench",
        "benchmarks (map extraction, the map store, loaders, pseudo labels, CRF, the GPU check)",
    ),
}


def stage_module(command: str) -> ModuleType:
    """The stage module of a subcommand."""
    return importlib.import_module(COMMANDS[command][0])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `drs` parser: every subcommand with its help; ``command``'s own arguments too (its stage
    module imported; the others are not)."""
    parser = argparse.ArgumentParser(
        prog="drs",
        description="Discriminative Region Suppression (DRS) for weakly-supervised semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"drs-wsss {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        stage = stage_module(name)
        p = sub.add_parser(
            name, help=help_text, description=stage.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        stage.add_arguments(p)
        p.set_defaults(func=stage.run)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: its first argument that is not an option (the top-level
    options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the parser of the subcommand it names (only that stage module imported)."""
    command = _command(argv)
    return build_parser(command if command in COMMANDS else None).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
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
        if "drs.runtime.distributed" in sys.modules:  # a stage run under torchrun leaves its process group
            sys.modules["drs.runtime.distributed"].cleanup()
