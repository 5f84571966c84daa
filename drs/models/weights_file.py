"""Reading a weights file a user names (``torch.load`` with ``weights_only=True`` on the CPU): the one
place that turns a missing or unreadable file into a UserError naming it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from drs.errors import UserError


def read_weights_file(
    path: str | os.PathLike,
    name: str,
    missing: str = "not found",
    unreadable: str = "cannot be read as a PyTorch state dict",
    safe_globals: Iterable = (),
) -> Any:
    """What the file at ``path`` holds. ``name`` starts each error (e.g. ``"VGG-16 weights file
    PATH"``), followed by ``missing`` or by ``unreadable`` and torch's reason; ``safe_globals``: types
    the file may hold beyond weights_only's defaults."""
    if not os.path.isfile(path):
        raise UserError(f"{name}: {missing}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file, the user's input
        raise UserError(f"{name}: {unreadable} ({err})") from None
