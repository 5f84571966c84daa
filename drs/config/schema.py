"""The workflow's config schema, the one home of every setting and its default.

``workflow/schemas/config.schema.yaml`` is the only place a default is written: :func:`section`
builds a settings dataclass with the schema's defaults of its config section and fails at import
when the two disagree on the keys; :class:`Section` checks a section's values (keys, types, ranges,
choices) with errors that name the key (``config key 'classifier.lr': ...``). Light imports only:
the Snakefile imports this at every job start.
"""

from __future__ import annotations

import copy
import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import yaml

from drs.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
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
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_properties(name: str) -> dict:
    """The schema's ``properties`` of the config section ``name``."""
    return schema()["properties"][name]["properties"]


def check_keys(section: str, values: dict, cls) -> None:
    """UserError naming the config section when ``values`` is not a mapping or has keys the dataclass
    ``cls`` lacks, and naming the key when a value is not of its field's type (int, float, bool, str,
    lists and tuples of those, optional ones; a bool is no int, an int is a float; other field types
    are left to ``cls``)."""
    if not isinstance(values, dict):
        raise UserError(f"config key '{section}': expected a mapping of settings, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"config key '{section}': unknown key(s) {unknown}; expected some of {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = _type_problem(value, hints[key])
        if expected:
            raise UserError(f"config key '{section}.{key}': expected {expected}, got {type(value).__name__} {value!r}")


_NAMES = {
    bool: ("true or false", "booleans"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _type_problem(value, hint) -> str | None:
    """What ``value`` should have been for the type ``hint`` (None when it fits or is not checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple) and args and args[0] in _NAMES:
        items = _NAMES[args[0]][1]
        fixed = origin is tuple and Ellipsis not in args
        what = f"a list of {len(args)} {items}" if fixed else f"a list of {items}"
        ok = (
            isinstance(value, (list, tuple))
            and (not fixed or len(value) == len(args))
            and not any(_type_problem(v, args[0]) for v in value)
        )
        return None if ok else what
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        problems = [_type_problem(value, a) for a in options]
        if any(p is None for p in problems):
            return None
        return " or ".join(problems) + (" or null" if type(None) in args else "")
    else:
        return None  # e.g. a nested dataclass: its own from_dict checks it
    return None if ok else _NAMES[hint][0]


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
