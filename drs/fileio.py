"""Small helpers shared by the stages: config-section keys, atomic files and folders, core count."""

from __future__ import annotations

import json
import os
import shutil
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from drs.errors import UserError


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


_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}


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


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write through a hidden temporary file and rename, so a reader never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_object(text: str, where: str, what: str = "a JSON object") -> dict:
    """``text`` parsed as a JSON object; UserError naming ``where`` (a file or an option) otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected {what}, got {type(data).__name__}")
    return data


@contextmanager
def publishing_dir(out: str | Path, replace: bool = False) -> Iterator[Path]:
    """Build a folder under the hidden sibling ``.<name>.partial`` (yielded) and rename it to ``out``
    when the block ends cleanly; on an error the partial folder is removed and ``out`` is untouched.
    With ``replace``, an existing ``out`` is moved aside before the new folder takes its name, then
    deleted; without it, ``out`` must not exist (callers check, naming what to do)."""
    out = Path(out)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if replace and out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(partial, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def check_replaceable_label_dir(out_dir: Path) -> None:
    """Only a folder of label PNGs is replaced: never a file or a folder holding anything else."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder; remove it or pick another output folder")
    others = [p.name for p in out_dir.iterdir() if not (p.is_file() and p.suffix == ".png")]
    if others:
        raise UserError(
            f"{out_dir}: exists and holds more than label PNGs (e.g. {sorted(others)[0]!r}); "
            "remove it or pick another output folder"
        )


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
