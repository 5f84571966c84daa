"""Writing a map store image by image (layout: :mod:`drs.store.format`)."""

from __future__ import annotations

import json
import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drs import __version__
from drs.store.format import (
    _ZLIB_LEVEL,
    COMPRESSION,
    FORMAT,
    IDS_DATASET,
    LIBVER,
    MAPS_GROUP,
    SCHEMA_VERSION,
    MapStoreError,
    partial_path,
)
from drs.store.reader import MapStore
from drs.util.files import output_lock, write_error


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
    discards the store and raises a UserError naming it (``drs.util.files.write_error``).

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
            attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
            attrs["score_scale"] = self.score_scale
            self._maps = self._file.create_group(MAPS_GROUP)
        except BaseException as err:
            self.abort()
            if isinstance(err, (OSError, RuntimeError)):
                raise write_error(self.path, err) from None
            raise

    def __enter__(self) -> MapStoreWriter:
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

    def add_store(self, store: MapStore) -> None:
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
                self._file.create_dataset(IDS_DATASET, data=self._ids, dtype=h5py.string_dtype())
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
