"""One dataclass per config section that reaches a stage, its defaults read from the schema.

The workflow's schema (``workflow/schemas/config.schema.yaml``) is the only place a default is
written: :func:`section` builds each dataclass with the schema's defaults of its section, and fails
at import when the two disagree on the keys. A stage takes its section as one JSON object
(``--settings``; the rules pass ``config[<section>]``), checked by :meth:`Section.from_dict`, whose
errors name the key (``config key 'classifier.lr': ...``). Light imports only (the CLI imports it).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from drs.errors import UserError
from drs.fileio import check_keys

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

# lower bounds of the trainers' settings, by key (a key a section lacks is skipped; a list's every item)
AT_LEAST = {
    "epochs": 1,
    "batch_size": 1,
    "crop_size": 1,
    "input_size": 1,
    "stages": 1,
    "log_every": 1,
    "num_workers": 0,
    "lr_decay_epochs": 1,
    "momentum": 0,
    "weight_decay": 0,
    "poly_power": 0,
    "output_stride": 1,
}
ABOVE = {"lr": 0, "width": 0}


@functools.cache
def schema() -> dict:
    """The workflow's config schema (read once)."""
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_properties(name: str) -> dict:
    """The schema's ``properties`` of the config section ``name``."""
    return schema()["properties"][name]["properties"]


def section(name: str):
    """Class decorator: ``cls`` as a dataclass of the config section ``name``, every field's default
    the schema's. ``cls`` (and its bases) declare the fields' types only; a field without a schema
    default, or a schema key without a field, is a TypeError at import."""

    def build(cls):
        defaults = {key: spec["default"] for key, spec in schema_properties(name).items() if "default" in spec}
        types = {}
        for base in reversed(cls.__mro__):
            types.update(base.__dict__.get("__annotations__", {}))
        types.pop("section", None)
        lacking = sorted(set(types) - set(defaults))
        unknown = sorted(set(schema_properties(name)) - set(types))
        if lacking or unknown:
            raise TypeError(
                f"{cls.__name__}: fields without a default in the schema's {name!r} section {lacking}, "
                f"schema keys without a field {unknown}"
            )
        own = dict(cls.__dict__.get("__annotations__", {}))
        for key, value in defaults.items():
            own.setdefault(key, types[key])
            if isinstance(value, (list, dict)):
                setattr(cls, key, field(default_factory=functools.partial(copy.deepcopy, value)))
            else:
                setattr(cls, key, value)
        cls.__annotations__ = own
        cls.section = name
        return dataclass(cls)

    return build


@dataclass
class Section:
    """A config section's settings: :meth:`from_dict` checks keys, types and ranges.

    ``section`` names the config section in error messages."""

    section: ClassVar[str] = "settings"

    @classmethod
    def from_dict(cls, values: dict):
        check_keys(cls.section, values, cls)  # known keys, values of the fields' types
        settings = cls(**values)
        settings.check_ranges()
        settings.check_choices()
        settings.check()
        return settings

    def check_ranges(self) -> None:
        """Each value within its range (:data:`AT_LEAST`, :data:`ABOVE`; UserError naming the key)."""
        for key, low in AT_LEAST.items():
            value = getattr(self, key, None)
            values = value if isinstance(value, list) else [value]
            if any(v is not None and not v >= low for v in values):
                raise UserError(f"config key '{self.section}.{key}': must be at least {low}, got {value!r}")
        for key, low in ABOVE.items():
            value = getattr(self, key, None)
            if value is not None and not value > low:
                raise UserError(f"config key '{self.section}.{key}': must be above {low}, got {value!r}")

    def check_choices(self) -> None:
        """Each value among its schema ``enum`` (UserError naming the key)."""
        for key, spec in schema_properties(self.section).items():
            value = getattr(self, key)
            if "enum" in spec and value not in spec["enum"]:
                raise UserError(f"config key '{self.section}.{key}': must be one of {spec['enum']}, got {value!r}")

    def check(self) -> None:
        """Rules across keys (UserError naming the key)."""


@dataclass
class TrainSettings(Section):
    """What every trainer has: a pretrained-weights choice, a schedule, data loading, logging."""

    pretrained: str  # "none", "imagenet" (torchvision's cached weights) or a path
    epochs: int
    batch_size: int
    lr: float
    crop_size: int
    seed: int
    num_workers: int | None  # None: the job's threads on CUDA, none on the CPU (drs.train.data_loader)
    log_every: int

    @property
    def weights(self) -> str | None:
        """The ``weights`` argument of the model builder."""
        return None if self.pretrained in ("none", "") else self.pretrained

    @property
    def loop(self):
        """The :class:`drs.train.LoopSettings` of these settings (epochs, seed, log interval)."""
        from drs.train import LoopSettings

        return LoopSettings(epochs=self.epochs, seed=self.seed, log_every=self.log_every)


@dataclass
class NetworkSettings(TrainSettings):
    """The VGG-16 networks' shape (classifier and refiner): width, batch norm, stages, input size,
    step decay."""

    width: float
    batch_norm: bool
    extra_batch_norm: bool
    norm: str  # the layer batch_norm / extra_batch_norm insert: batch or group
    stages: int
    lr_decay_epochs: list[int]
    input_size: int

    def check(self) -> None:
        if self.crop_size > self.input_size:
            raise UserError(
                f"config key '{self.section}.crop_size': {self.crop_size} exceeds input_size {self.input_size}"
            )


@section("maps")
class MapsSettings(Section):
    """Localization-map extraction (``drs extract-maps``): square input sizes, flip, batch size."""

    scales: list[int]
    flip: bool
    batch_size: int

    def check(self) -> None:
        if not self.scales or min(self.scales) < 1:
            raise UserError(f"config key 'maps.scales': square sizes of at least 1 pixel, got {self.scales!r}")


@section("evaluation")
class EvaluationSettings(Section):
    """DeepLabV3+'s predictions and their scores (``drs evaluate``); ``checkpoint`` and
    ``test_split`` choose the workflow's inputs."""

    scales: list[float]
    flip: bool
    protocol: str
    crop_size: int
    checkpoint: str
    crf: bool
    test_split: str

    def __post_init__(self) -> None:
        self.scales = [float(s) if isinstance(s, int) and not isinstance(s, bool) else s for s in self.scales]

    def check(self) -> None:
        if not self.scales or not all(s > 0 for s in self.scales):
            raise UserError(f"config key 'evaluation.scales': factors above 0, got {self.scales!r}")


@section("pseudo_labels")
class PseudoLabelSettings(Section):
    """The pseudo-label rule and its scoring (``drs pseudo-labels``, ``eval-maps``, ``score-labels``,
    ``check-dataset``); see :mod:`drs.pseudo_labels` and :mod:`drs.protocol`."""

    alpha: float
    saliency: str
    bg_threshold: float
    conflict_score: float
    # grey level (0-255) above which saliency is salient; None: grey / 255 as continuous saliency
    saliency_threshold: float | None
    reference_split: str | None
    headline_protocol: str
    missing_saliency: str

    def __post_init__(self) -> None:
        # numbers as a number flag gives them (50 -> 50.0): the metrics JSON shows them alike either way
        for key in ("alpha", "bg_threshold", "conflict_score", "saliency_threshold"):
            value = getattr(self, key)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, key, float(value))

    def check(self) -> None:
        for key in ("alpha", "bg_threshold", "conflict_score"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"config key '{self.section}.{key}': must be in [0, 1], got {value!r}")
        t = self.saliency_threshold
        if t is not None and not 0.0 <= t <= 255.0:
            raise UserError(f"config key '{self.section}.saliency_threshold': must be in [0, 255] or null, got {t!r}")


# -- command line: every stage takes its section as --settings JSON --------------------------------
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
    from dataclasses import fields

    from drs.fileio import json_object

    values = json_object(args.settings, "--settings")
    given = vars(args)
    values.update({f.name: given[f.name] for f in fields(cls) if f.name in given})
    return cls.from_dict(values)


def add_trainer_arguments(parser, cls) -> None:
    """What every ``drs train-<kind>`` takes: the dataset and split, the output folder, its section
    (``--settings``) and a seed overriding it."""
    import argparse

    parser.add_argument("--dataset", required=True, help="dataset folder in VOC layout")
    parser.add_argument("--split", default="train", help="id list to train on (default: train)")
    parser.add_argument("--out", required=True, help="output folder (model.pt, last.pt)")
    add_settings_argument(parser, cls)
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS, help=f"override {cls.section}.seed")
