"""Small file helpers shared by the stages: settings from config sections, atomic writes."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

from drs.errors import UserError


def check_keys(section: str, values: dict, cls) -> None:
    """UserError naming the config section when ``values`` has keys the dataclass ``cls`` lacks."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"config key '{section}': unknown key(s) {unknown}; expected some of {sorted(known)}")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write through a hidden temporary file and rename, so a reader never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
