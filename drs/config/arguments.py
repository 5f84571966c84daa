"""The command line's way into a stage: its config section as ``--settings JSON``.

Every stage fed by the config takes its section whole as ``--settings`` (keys left out take the
schema's defaults); a per-key flag given by hand (registered with ``default=argparse.SUPPRESS``)
overrides one key, under the key's own name (``alpha`` is ``--alpha``).
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from drs.config.schema import schema_properties
from drs.config.settings import PseudoLabelSettings
from drs.util.files import json_object


def add_settings_argument(parser, cls) -> None:
    """``--settings JSON``: the config's section of ``cls`` (keys left out: the schema's defaults)."""
    parser.add_argument(
        "--settings",
        default="{}",
        metavar="JSON",
        help=f"the config's `{cls.section}:` section as a JSON object (keys left out take the schema's defaults)",
    )


def settings_from_args(cls, args):
    """``cls`` from ``args.settings``, each key of ``cls`` that ``args`` holds (a per-key flag given
    by hand, registered with ``default=argparse.SUPPRESS``) replacing its value."""
    values = json_object(args.settings, "--settings")
    given = vars(args)
    values.update({f.name: given[f.name] for f in fields(cls) if f.name in given})
    return cls.from_dict(values)


def add_trainer_arguments(parser, cls) -> None:
    """What every ``drs train-<kind>`` takes: the dataset and split, the output folder, its section
    (``--settings``) and a seed overriding it."""
    parser.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    parser.add_argument("--split", default="train", help="id list to train on (default: train)")
    parser.add_argument("--out", required=True, help="output folder (model.pt, last.pt)")
    add_settings_argument(parser, cls)
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS, help=f"override {cls.section}.seed")
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the history (OUT/history.csv) to TensorBoard in OUT/tensorboard (logging.tensorboard)",
    )


def saliency_threshold_arg(text: str) -> float | None:
    """``--saliency-threshold`` value: a number on 0-255, or ``continuous`` / ``none`` for None."""
    if text.lower() in ("continuous", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 255] or 'continuous', got {text!r}") from None
    if not 0.0 <= value <= 255.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 255] or 'continuous', got {text!r}")
    return value


def add_rule_arguments(parser) -> None:
    """``--settings`` (the config's ``pseudo_labels`` section) and, for use by hand, a flag per key
    that overrides it (pseudo-labels, eval-maps, score-labels)."""
    keys = schema_properties("pseudo_labels")
    add_settings_argument(parser, PseudoLabelSettings)
    types = {
        "alpha": float,
        "bg_threshold": float,
        "conflict_score": float,
        "saliency_threshold": saliency_threshold_arg,
    }
    for key, spec in keys.items():
        parser.add_argument(
            "--" + key.replace("_", "-"),
            type=types.get(key),
            choices=spec.get("enum"),
            default=argparse.SUPPRESS,
            help=f"override pseudo_labels.{key} (default {spec['default']!r}): {spec.get('description', '')}".rstrip(
                ": "
            ),
        )


def rule_settings(args) -> PseudoLabelSettings:
    """The pseudo-label settings of parsed arguments (:func:`add_rule_arguments`)."""
    return settings_from_args(PseudoLabelSettings, args)
