"""The localization-map store: one HDF5 file per experiment, split and stage.

Layout (``SCHEMA_VERSION`` 1)::

    /                   attrs: format = "drs-map-store", schema_version, class_names (JSON, background
                               first), scales (JSON), flip, stage, split, dataset, checkpoint_sha256,
                               dataset_fingerprint (JSON: drs.data.fingerprint of the images and masks
                               the maps came from; absent in older stores), config (JSON text),
                               package_version, created (ISO-8601 UTC), num_images,
                               score_scale (optional, default 1.0)
    /maps/<image id>    uint8 (K, H, W), 0..255 = score in [0, score_scale] x 255 / score_scale, one map
                        per class present;
                        chunks (1, H, W), gzip level 4 with shuffle (K = 0: plain, empty)
                        attrs: classes (int16, sorted class indices 1..C, length K), size ([H, W])
    /ids                the image ids in write order (written when the store is closed)

Only the classes present in an image are stored, so a store is a small fraction of the dense
C x H x W arrays. A store being written lives under a hidden name (``.<name>.partial``) in the same
folder and is renamed to its final name only when closed cleanly, so a store under its final name is
always complete. One writer at a time: a second run on the same store is told that another run is
writing it (``fileio.output_lock``). A failed write (a full disk) stops the writer at once with one
error naming the store; the partial file is removed and the store under the final name is kept.

``drs inspect STORE`` prints a summary; ``drs inspect STORE --id ID --out overlay.png`` draws one
image's maps over the image, next to its ground truth.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from drs import __version__
from drs.errors import UserError
from drs.fileio import output_lock, write_error

FORMAT = "drs-map-store"
SCHEMA_VERSION = 1
MAPS_GROUP = "maps"
IDS_DATASET = "ids"
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
#: per chunk, what HDF5's filter pipeline of ``COMPRESSION`` makes of a uint8 chunk: shuffle is the
#: identity on 1-byte elements, then deflate (zlib's ``compress2`` at the same level)
_ZLIB_LEVEL = COMPRESSION["compression_opts"]
_JSON_ATTRS = ("class_names", "scales", "config", "dataset_fingerprint")
LIBVER = ("v110", "v110")  # readable by HDF5 >= 1.10 (h5py >= 2.10)


class MapStoreError(UserError, ValueError):
    """Bad arguments to :meth:`MapStoreWriter.add` (a ``UserError`` and a ``ValueError``)."""


def _h5py():
    import h5py  # heavy: imported on use so that `drs --help` stays fast

    return h5py


def partial_path(path: str | Path) -> Path:
    """The hidden name a store is written under until it is complete."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


# -- writing ---------------------------------------------------------------------------------------
class _GuardedFile:
    """The partial store's file as HDF5 sees it (h5py's "fileobj" driver). HDF5 does not recover
    from a failed write: it prints the error for every object it closes afterwards (h5py can only
    report errors of a dataset closed by the garbage collector), and closing the file can then
    crash the process (segmentation fault after ENOSPC). So the first ``OSError`` of a write is
    kept in ``error`` and that write and every later one are dropped as if done: HDF5 carries on
    to a clean close of a file that :class:`MapStoreWriter` then deletes, raising the error."""

    def __init__(self, raw):
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self.raw.write(view[done:])
                return done
            except OSError as err:
                self.error = err
        self.raw.seek(len(view), os.SEEK_CUR)
        return len(view)

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(size)

    def readinto(self, buffer) -> int:
        return self.raw.readinto(buffer)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.raw.truncate(size)
            except OSError as err:
                self.error = err
        return self.raw.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        self.raw.close()


class MapStoreWriter:
    """Write a map store image by image; see the module docstring for the layout.

    Use as a context manager: on a clean exit the store is completed and renamed to ``path``; on an
    exception the partial file is deleted and ``path`` is left as it was. Outside ``with``, call
    :meth:`close` (complete) or :meth:`abort` (discard). An HDF5 write that fails (a full disk)
    discards the store and raises a UserError naming it (``fileio.write_error``).

    ``compress_workers`` > 0: each image's chunks are deflated on a pool of that many threads
    (zlib releases the GIL) while the caller goes on, and written in order, already compressed,
    with HDF5's direct chunk writes; the datasets declare the same shuffle + gzip filters, so the
    file reads exactly like one written through HDF5's own filter pipeline (``compress_workers=0``,
    the default). At most ``2 * compress_workers + 1`` images wait for their chunks.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        class_names: list[str] | tuple[str, ...],
        scales: list[float] | tuple[float, ...],
        flip: bool,
        stage: str,
        split: str,
        dataset: str | Path,
        checkpoint_sha256: str = "",
        config: Any = None,
        dataset_fingerprint: dict | None = None,
        score_scale: float = 1.0,
        compress_workers: int = 0,
    ):
        h5py = _h5py()
        if not (np.isfinite(score_scale) and score_scale > 0):
            raise MapStoreError(f"{path}: score_scale must be a positive number, got {score_scale!r}")
        self.score_scale = float(score_scale)
        self.path = Path(path)
        self.class_names = [str(name) for name in class_names]
        if len(self.class_names) < 2:
            raise MapStoreError(f"{self.path}: class_names needs background plus at least one class")
        self.num_classes = len(self.class_names) - 1
        self.partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ids: list[str] = []
        self._seen: set[str] = set()
        self._file = self._raw = None
        self._pool = (
            ThreadPoolExecutor(compress_workers, thread_name_prefix="drs-deflate") if compress_workers > 0 else None
        )
        self._max_pending = 2 * compress_workers + 1
        self._pending: deque[tuple[str, np.ndarray, np.ndarray, Future]] = deque()
        self._lock = ExitStack()
        self._lock.enter_context(output_lock(self.path))  # released by close() or abort()
        # HDF5 1.10 file format: far smaller per-dataset overhead (fixed-array chunk index) than
        # the 1.8-compatible default, which matters with one small dataset per image. HDF5 writes
        # through a _GuardedFile, which keeps the first failed write (a full disk) from HDF5.
        with self._writing():
            self._raw = _GuardedFile(open(self.partial, "w+b", buffering=0))
            self._file = h5py.File(self._raw, "w", libver=LIBVER)
        try:
            attrs = self._file.attrs
            attrs["format"] = FORMAT
            attrs["schema_version"] = SCHEMA_VERSION
            attrs["class_names"] = json.dumps(self.class_names)
            attrs["scales"] = json.dumps([int(s) if isinstance(s, (int, np.integer)) else float(s) for s in scales])
            attrs["flip"] = bool(flip)
            attrs["stage"] = str(stage)
            attrs["split"] = str(split)
            attrs["dataset"] = str(dataset)
            attrs["checkpoint_sha256"] = str(checkpoint_sha256)
            if dataset_fingerprint is not None:
                attrs["dataset_fingerprint"] = json.dumps(dataset_fingerprint, sort_keys=True)
            attrs["config"] = json.dumps(config if config is not None else {}, sort_keys=True, default=str)
            attrs["package_version"] = __version__
            attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            attrs["score_scale"] = self.score_scale
            self._maps = self._file.create_group(MAPS_GROUP)
        except BaseException as err:
            self.abort()
            if isinstance(err, (OSError, RuntimeError)):
                raise write_error(self.path, err) from None
            raise

    def __enter__(self) -> "MapStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, image_id: str, classes, maps: np.ndarray) -> None:
        """Store one image's maps: ``maps[k]`` is the map of class ``classes[k]`` (1..C).

        ``maps`` is uint8 (K, H, W) or float scores in [0, score_scale] (clipped to that range, then
        rounded to 0..255 steps of score_scale / 255).
        """
        if self._file is None:
            raise MapStoreError(f"{self.path}: store is closed")
        image_id = str(image_id)
        where = f"{self.path}: image {image_id!r}"
        if not image_id or "/" in image_id or image_id in (".", ".."):
            raise MapStoreError(f"{where}: an image id must be non-empty, not '.' or '..', and without '/'")
        if image_id in self._seen:
            raise MapStoreError(f"{where}: already added (duplicate id)")
        classes = np.asarray(classes)
        if classes.size == 0:
            classes = np.zeros(0, dtype=np.int64)
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
            raise MapStoreError(f"{where}: classes must be a 1-D list of integer class indices, got {classes.tolist()}")
        classes = classes.astype(np.int64)
        maps = np.asarray(maps)
        if maps.ndim != 3:
            raise MapStoreError(f"{where}: maps must be (K, H, W), got shape {maps.shape}")
        if maps.shape[0] != len(classes):
            raise MapStoreError(f"{where}: {maps.shape[0]} maps for {len(classes)} classes {classes.tolist()}")
        if maps.shape[1] < 1 or maps.shape[2] < 1:
            raise MapStoreError(f"{where}: empty image size {maps.shape[1:]}")
        bad = classes[(classes < 1) | (classes > self.num_classes)]
        if bad.size:
            raise MapStoreError(f"{where}: class indices {bad.tolist()} out of range 1..{self.num_classes}")
        if len(np.unique(classes)) != len(classes):
            raise MapStoreError(f"{where}: duplicate class indices in {classes.tolist()}")
        if maps.dtype == np.uint8:
            data = maps
        elif np.issubdtype(maps.dtype, np.floating):
            if not np.isfinite(maps).all():
                raise MapStoreError(f"{where}: maps hold NaN or infinite values")
            data = np.round(np.clip(maps / self.score_scale, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            raise MapStoreError(f"{where}: maps must be uint8 or float in [0, 1], got {maps.dtype}")
        order = np.argsort(classes, kind="stable")
        classes, data = classes[order], np.ascontiguousarray(data[order])
        self._ids.append(image_id)
        self._seen.add(image_id)
        if self._pool is None or not len(classes):
            self._write_pending(block=True)  # keep the write order
            self._write(image_id, classes, data, None)
            return
        self._pending.append((image_id, classes, data, self._pool.submit(_deflate_chunks, data)))
        self._write_pending(block=False)

    def _write_pending(self, block: bool) -> None:
        """Write the waiting images whose chunks are compressed, in order (all of them with
        ``block``; else wait only while more than ``_max_pending`` images wait)."""
        while self._pending and (block or len(self._pending) > self._max_pending or self._pending[0][3].done()):
            image_id, classes, data, future = self._pending.popleft()
            self._write(image_id, classes, data, future.result())

    def _write(self, image_id: str, classes: np.ndarray, data: np.ndarray, chunks: list[bytes] | None) -> None:
        height, width = data.shape[1:]
        with self._writing():
            if chunks is not None:
                dset = self._maps.create_dataset(
                    image_id, shape=data.shape, dtype=np.uint8, chunks=(1, height, width), **COMPRESSION
                )
                for k, chunk in enumerate(chunks):
                    dset.id.write_direct_chunk((k, 0, 0), chunk)
            elif len(classes):
                dset = self._maps.create_dataset(image_id, data=data, chunks=(1, height, width), **COMPRESSION)
            else:
                dset = self._maps.create_dataset(image_id, data=data)
            dset.attrs["classes"] = classes.astype(np.int16)
            dset.attrs["size"] = np.array([height, width], dtype=np.int64)
            del dset  # closed: its chunks and header are written now
        self._check_writes()

    def add_store(self, store: "MapStore") -> None:
        """Append every image of another store, in its order, copying each image's compressed maps
        as they are (no decompression): how the parts of a sharded extraction become one store."""
        if self._file is None:
            raise MapStoreError(f"{self.path}: store is closed")
        if store.class_names != self.class_names:
            raise MapStoreError(
                f"{store.path}: classes {store.class_names} differ from {self.path}'s {self.class_names}"
            )
        if store.score_scale != self.score_scale:
            raise MapStoreError(
                f"{store.path}: score_scale {store.score_scale} differs from {self.path}'s {self.score_scale}"
            )
        self._write_pending(block=True)
        for image_id in store.ids:
            if image_id in self._seen:
                raise MapStoreError(f"{self.path}: image {image_id!r} from {store.path} already added (duplicate id)")
            with self._writing():
                self._file.copy(store._maps[image_id], self._maps, name=image_id)
            self._check_writes()
            self._ids.append(image_id)
            self._seen.add(image_id)

    def close(self) -> Path:
        """Complete the store (ids, image count) and move it to its final name."""
        if self._file is None:
            return self.path
        try:
            self._write_pending(block=True)
            self._stop_pool()
            with self._writing():
                self._file.create_dataset(IDS_DATASET, data=self._ids, dtype=_h5py().string_dtype())
                self._file.attrs["num_images"] = len(self._ids)
                self._file.close()
                self._file = None
                self._check_writes()
                self._raw.close()
                self._raw = None
                os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise
        self._lock.close()
        return self.path

    @contextmanager
    def _writing(self):
        """HDF5 (and OS) write failures inside the block: discard the store, raise one UserError."""
        try:
            yield
        except (OSError, RuntimeError) as err:
            self.abort()
            raise write_error(self.path, err) from None

    def _check_writes(self) -> None:
        """The first failed write (a full disk), if any: discard the store, raise one UserError."""
        if self._raw is not None and self._raw.error is not None:
            error = self._raw.error
            self.abort()
            raise write_error(self.path, error)

    def _stop_pool(self) -> None:
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Discard the partial store; the final path is not touched."""
        self._stop_pool()
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass
            self._file = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self.partial.unlink(missing_ok=True)
        self._lock.close()


def _deflate_chunks(data: np.ndarray) -> list[bytes]:
    """The (1, H, W) chunks of a C-contiguous uint8 (K, H, W) array as HDF5's shuffle + deflate
    pipeline stores them (zlib releases the GIL while it compresses)."""
    return [zlib.compress(plane, _ZLIB_LEVEL) for plane in data]


# -- reading ---------------------------------------------------------------------------------------
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
        h5py = _h5py()
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

    def __enter__(self) -> "MapStore":
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


# -- summary ---------------------------------------------------------------------------------------
def _stats(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    median = float(np.median(values))
    return {"min": int(min(values)), "median": int(median) if median.is_integer() else median, "max": int(max(values))}


def summary(store: MapStore | str | Path) -> dict[str, Any]:
    """Figures about a store: contents, image sizes, bytes against dense C x H x W uint8, provenance."""
    if not isinstance(store, MapStore):
        with MapStore(store) as opened:
            return summary(opened)
    names = store.class_names
    counts = np.zeros(store.num_classes + 1, dtype=np.int64)
    heights, widths, dense = [], [], []
    maps_stored = 0
    for image_id in store.ids:
        classes, (height, width) = store.header(image_id)
        counts[classes] += 1
        maps_stored += len(classes)
        heights.append(height)
        widths.append(width)
        dense.append(store.num_classes * height * width)
    num = len(store)
    file_bytes = store.path.stat().st_size
    per_image = file_bytes / num if num else None
    dense_mean = float(np.mean(dense)) if dense else None
    attrs = store.attrs
    return {
        "path": str(store.path),
        "schema_version": attrs.get("schema_version"),
        "stage": store.stage,
        "score_scale": store.score_scale,
        "split": store.split,
        "dataset": attrs.get("dataset"),
        "num_images": num,
        "num_classes": store.num_classes,
        "class_names": names,
        "images_per_class": {names[c]: int(counts[c]) for c in range(1, len(names))},
        "maps_stored": maps_stored,
        "image_height": _stats(heights),
        "image_width": _stats(widths),
        "file_bytes": file_bytes,
        "bytes_per_image": per_image,
        "dense_uint8_bytes_per_image": dense_mean,
        "ratio_to_dense": per_image / dense_mean if num and dense_mean else None,
        "checkpoint_sha256": attrs.get("checkpoint_sha256"),
        "dataset_fingerprint": attrs.get("dataset_fingerprint"),
        "package_version": attrs.get("package_version"),
        "created": attrs.get("created"),
        "scales": store.scales,
        "flip": store.flip,
        "config": attrs.get("config"),
    }


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _fingerprint_text(values: dict | None) -> str:
    if not values:
        return "- (not recorded)"
    from drs.data.fingerprint import Fingerprint

    return str(Fingerprint.from_dict(values, "dataset_fingerprint"))


def format_summary(info: dict[str, Any]) -> str:
    """The summary as readable "key: value" lines."""
    ratio = info["ratio_to_dense"]
    if ratio is None:
        ratio_text = "-"
    elif ratio < 1:
        ratio_text = f"1/{1 / ratio:.0f} of a dense C x H x W uint8 array"
    else:
        ratio_text = f"{ratio:.2f} x a dense C x H x W uint8 array"

    def size(stats: dict) -> str:
        return f"min {stats['min']}, median {stats['median']}, max {stats['max']}"

    per_class = ", ".join(f"{name} {count}" for name, count in info["images_per_class"].items())
    lines = [
        ("path", info["path"]),
        ("schema_version", info["schema_version"]),
        ("stage", info["stage"]),
        ("score scale", f"255 = score {info['score_scale']:g}"),
        ("split", info["split"]),
        ("dataset", info["dataset"]),
        ("images", info["num_images"]),
        ("classes", f"{info['num_classes']} ({', '.join(info['class_names'][1:])})"),
        ("images per class", per_class),
        ("maps stored", info["maps_stored"]),
        ("image height", size(info["image_height"])),
        ("image width", size(info["image_width"])),
        ("file size", _bytes(info["file_bytes"])),
        ("bytes per image", _bytes(info["bytes_per_image"])),
        ("dense uint8 bytes per image", _bytes(info["dense_uint8_bytes_per_image"])),
        ("size vs dense", ratio_text),
        ("checkpoint sha256", info["checkpoint_sha256"] or "-"),
        ("dataset fingerprint", _fingerprint_text(info.get("dataset_fingerprint"))),
        ("package version", info["package_version"]),
        ("created", info["created"]),
        ("scales", ", ".join(f"{s:g}" for s in info["scales"])),
        ("flip", "yes" if info["flip"] else "no"),
        ("config", json.dumps(info["config"], sort_keys=True)),
    ]
    return "\n".join(f"{key}: {value}" for key, value in lines)


# -- command line ----------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a map store, or draw one image's maps",
        description="Summarise a localization-map store (HDF5): contents, image sizes, size against dense "
        "arrays, and what made it. With --id and --out, draw that image's maps over the image, next to "
        "its ground truth, as a PNG.",
    )
    p.add_argument("store", help="map store (.h5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--id", dest="image_id", help="image id to draw (needs --out)")
    p.add_argument("--out", help="PNG to write the overlay to (needs --id)")
    p.add_argument("--dataset", help="dataset folder (default: the one recorded in the store)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    if (args.image_id is None) != (args.out is None):
        raise UserError("--id and --out go together: --id ID --out PNG draws that image's maps")
    with MapStore(args.store) as store:
        if args.image_id is not None:
            from drs.fileio import atomic_save_image
            from drs.viz import store_overlay

            out = atomic_save_image(args.out, store_overlay(store, args.image_id, args.dataset))
            print(out)
            return 0
        info = summary(store)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0
