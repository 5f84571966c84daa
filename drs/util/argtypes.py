"""argparse ``type=`` converters that name the bad value (argparse adds the option's name)."""

from __future__ import annotations

import argparse
import math

from drs.errors import UserError


def positive_int(text: str) -> int:
    """An integer of at least 1 (sizes, counts, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (scale factors)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (retries, worker counts)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def name_value_pairs(values: list[str], option: str, sep: str = "=") -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments as (name, value) pairs; a UserError naming ``option`` for any other."""
    out = []
    for value in values:
        name, found, rest = value.partition(sep)
        if not found or not name or not rest:
            raise UserError(f"{option}: expected NAME{sep}VALUE, got {value!r}")
        out.append((name, rest))
    return out
