"""Reading a map store: its classes, ids, one image's maps, and what made it (layout: :mod:`drs.store.format`).

:func:`open_store` (also ``drs.open_store``) opens any store the workflow writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drs import __version__
from drs.errors import UserError
from drs.store.format import _JSON_ATTRS, FORMAT, IDS_DATASET, MAPS_GROUP, SCHEMA_VERSION, partial_path


@dataclass
class MapRecord:
    """One image's stored maps: ``maps[k]`` is the map of class ``classes[k]``."""

    image_id: str
    classes: np.ndarray  # int64 (K,), sorted, 1..C
    maps: np.ndarray  # uint8 (K, H, W)
    size: tuple[int, int]  # (H, W)
    scale: float = 1.0  # the store's score_scale: 255 stands for this score

    def float(self) -> np.ndarray:
        """The maps as float32 scores in [0, scale] ([0, 1] for classifier maps)."""
        return self.maps.astype(np.float32) * np.float32(self.scale / 255.0)


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as plain Python."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class MapStore:
    """Read a map store. Usable as a context manager, or directly (then call :meth:`close`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            hint = ""
            if partial_path(self.path).exists():
                hint = f" ({partial_path(self.path).name} exists: its writer is still running or was killed)"
            raise UserError(f"{self.path}: map store not found{hint}")
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder, not a map store file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError:
            raise UserError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?)") from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        try:
            attrs = {key: _plain(self._file.attrs[key]) for key in self._file.attrs}
        except OSError:
            raise UserError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?)") from None
        if attrs.get("format") != FORMAT:
            raise UserError(f"{self.path}: not a drs map store (HDF5 file without format = {FORMAT!r})")
        version = attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: map store schema version {version}, but this drs ({__version__}) reads version "
                f"{SCHEMA_VERSION}; re-run map extraction to rebuild it"
            )
        for key in _JSON_ATTRS:
            if isinstance(attrs.get(key), str):
                try:
                    attrs[key] = json.loads(attrs[key])
                except json.JSONDecodeError:
                    raise UserError(f"{self.path}: attribute {key!r} is not valid JSON") from None
        if IDS_DATASET not in self._file or MAPS_GROUP not in self._file:
            raise UserError(
                f"{self.path}: incomplete map store (no {IDS_DATASET!r} list: its writer never finished); "
                "re-run map extraction"
            )
        try:
            self._ids = [_plain(i) for i in self._file[IDS_DATASET][()]]
        except OSError:
            raise UserError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?)") from None
        self._id_set = set(self._ids)
        self._maps = self._file[MAPS_GROUP]
        self._attrs = attrs
        names = attrs.get("class_names")
        if not isinstance(names, list) or len(names) < 2:
            raise UserError(f"{self.path}: attribute 'class_names' must list background plus at least one class")

    def __enter__(self) -> MapStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"MapStore({str(self.path)!r})"

    # -- metadata --------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """All file attributes, JSON attributes decoded."""
        return dict(self._attrs)

    @property
    def provenance(self) -> dict[str, Any]:
        """What made the store: stage, split, dataset and its fingerprint, the checkpoint's SHA-256,
        scales, flip, the extraction config, package version and creation time."""
        keys = ("stage", "split", "dataset", "dataset_fingerprint", "checkpoint_sha256", "scales", "flip", "config")
        return {key: self._attrs.get(key) for key in (*keys, "package_version", "created")}

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def class_names(self) -> list[str]:
        return list(self._attrs["class_names"])

    @property
    def num_classes(self) -> int:
        """Number of foreground classes C."""
        return len(self._attrs["class_names"]) - 1

    @property
    def scales(self) -> list[float]:
        return list(self._attrs.get("scales", []))

    @property
    def flip(self) -> bool:
        return bool(self._attrs.get("flip", False))

    @property
    def score_scale(self) -> float:
        """The score a stored 255 stands for (1.0 unless the writer said otherwise, e.g. refined maps)."""
        return float(self._attrs.get("score_scale", 1.0))

    @property
    def stage(self) -> str:
        return str(self._attrs.get("stage", ""))

    @property
    def split(self) -> str:
        return str(self._attrs.get("split", ""))

    # -- maps ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._id_set

    def __iter__(self) -> Iterator[MapRecord]:
        for image_id in self._ids:
            yield self.read(image_id)

    def _dataset(self, image_id: str):
        if image_id not in self._id_set:
            raise UserError(f"{self.path}: image id {image_id!r} not in this map store ({len(self)} images)")
        return self._maps[image_id]

    def header(self, image_id: str) -> tuple[np.ndarray, tuple[int, int]]:
        """An image's class indices and (H, W), without reading its maps."""
        try:
            dset = self._dataset(image_id)
            classes = np.asarray(dset.attrs["classes"], dtype=np.int64).reshape(-1)
            height, width = (int(v) for v in dset.attrs["size"])
        except (OSError, KeyError) as err:
            raise UserError(f"{self.path}: cannot read image {image_id!r} ({err})") from None
        return classes, (height, width)

    def read(self, image_id: str) -> MapRecord:
        classes, size = self.header(image_id)
        try:
            maps = self._maps[image_id][()]
        except OSError as err:
            raise UserError(f"{self.path}: cannot read maps of image {image_id!r} ({err})") from None
        return MapRecord(image_id=image_id, classes=classes, maps=maps, size=size, scale=self.score_scale)

    def dense(self, image_id: str) -> np.ndarray:
        """float32 (C, H, W) scores (see :meth:`MapRecord.float`); zeros for classes not stored."""
        record = self.read(image_id)
        out = np.zeros((self.num_classes, *record.size), dtype=np.float32)
        out[record.classes - 1] = record.float()
        return out


def open_store(path: str | Path) -> MapStore:
    """Open any map store the workflow writes (``results/<exp>/maps/<split>.h5``, ``<split>_refined.h5``):
    its ``class_names``, ``ids``, one image's maps (``read(id)``, ``dense(id)``) and ``provenance``.
    Close it, or use it as a context manager."""
    return MapStore(path)
