"""Outputs written safely: atomic files and folders, one writer per output, full-disk errors.

Every output is written the same way: under a hidden ``.<name>.partial`` that is renamed to its
final name only when complete; by one run at a time (``.<name>.lock``, :func:`output_lock`); a full
disk stops the run at the first failed write with one line naming the output ("no space left on
device"), the partial output removed and what was there before kept (:func:`write_error`). A folder
the project publishes carries a marker (:data:`MARKER`, its kind) and only such a folder is ever
replaced (:func:`check_replaceable_dir`); nothing is written in the dataset folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from drs import __version__
from drs.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

# -- write failures --------------------------------------------------------------------------------
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) is a full disk or an exceeded quota: an
    ``OSError`` with ENOSPC/EDQUOT, or a library's error whose text carries it (HDF5 writes
    "errno = 28, error message = 'No space left on device'")."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        text = str(err)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def write_error(path: str | Path, err: BaseException) -> UserError:
    """The one-line UserError for a failed write of ``path``: "no space left on device" for a full
    disk, else the first line of the system's (or library's) reason."""
    if is_disk_full(err):
        return UserError(
            f"{path}: no space left on device; the partial output was removed, free some space and run again"
        )
    reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
    return UserError(f"{path}: cannot write ({reason[:300]})")


@contextmanager
def disk_full_errors(path: str | Path) -> Iterator[None]:
    """A full disk inside the block becomes :func:`write_error` naming ``path`` (other errors pass)."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        if is_disk_full(err):
            raise write_error(path, err) from None
        raise


class RecordingWriter:
    """A binary file for writers that turn a failed ``write`` into an error of their own (torch.save's
    zip writer raises "enforce fail ... unexpected pos" for ENOSPC): the first ``OSError`` is kept
    in ``error`` so that the caller can raise it instead."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.file.flush()

    @property
    def name(self) -> str:
        """The path being written (the open file's)."""
        return self.file.name


# -- one writer per output -------------------------------------------------------------------------


def lock_path(out: str | Path) -> Path:
    """The lock file a run holds while it writes ``out`` (a file or a folder)."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


@contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold ``.<name>.lock`` beside ``out`` (an exclusive ``flock``) while the block writes ``out``;
    a second run on the same output gets a UserError saying another run is writing it. The lock
    dies with its process (a killed run leaves at most an unlocked file, which the next run takes);
    the file is removed on release, and a run that opened a file removed meanwhile locks anew."""
    out = Path(out)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # not POSIX: no locking
        yield path
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(
                f"{out}: another run is writing it (it holds {path}); wait for it to finish or pick another output"
            ) from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # its holder released (and removed) it after we opened it: lock the new one
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)


def partial_name(path: str | Path) -> Path:
    """The hidden sibling ``.<name>.partial`` an output is built under until it is complete."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield the hidden temporary path to write ``path`` through; it is renamed to ``path`` when the
    block ends cleanly. On any error (a full disk becomes :func:`write_error`) the temporary file is
    removed and ``path`` keeps what it held. One run at a time (:func:`output_lock`)."""
    path = Path(path)
    tmp = partial_name(path)
    with output_lock(path):
        try:
            with disk_full_errors(path):
                yield tmp
                os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write through a hidden temporary file and rename, so a reader never sees a partial file."""
    path = Path(path)
    with atomic_file(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as err:
            raise write_error(path, err) from None
    return path


def atomic_save_image(path: str | Path, array) -> Path:
    """An RGB or grey uint8 array as an image file (format from the suffix, PNG if unknown), atomically."""
    path = Path(path)
    kind = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_file(path) as tmp:
        Image.fromarray(array).save(tmp, format=kind)
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


# -- published folders -----------------------------------------------------------------------------


MARKER = ".drs-output.json"


def folder_kind(folder: str | Path) -> str | None:
    """The kind recorded in a folder's :data:`MARKER` (None: a folder this project did not publish)."""
    try:
        kind = json.loads((Path(folder) / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def check_outside_dataset(out: str | Path, dataset: str | Path | None) -> None:
    """UserError when ``out`` is the dataset folder, lies inside it, or holds it: no stage writes there."""
    if dataset is None:
        return
    target, root = Path(out).resolve(), Path(dataset).resolve()
    if target == root or root in target.parents:
        raise UserError(f"{out}: inside the dataset folder {dataset}; outputs never go there, pick a path outside it")
    if target in root.parents:
        raise UserError(f"{out}: holds the dataset folder {dataset}; pick an output outside it")


def check_replaceable_dir(
    out: str | Path, kind: str, dataset: str | Path | None = None, suffixes: tuple[str, ...] | None = (".png",)
) -> None:
    """UserError unless ``out`` may be (re)published as a folder of ``kind``: it is absent, or a folder
    this project published as ``kind`` (its :data:`MARKER` says so) that holds nothing but such files
    (names ending in ``suffixes``; ``None``: a tree of any files). Never the dataset folder or anything in it."""
    out = Path(out)
    check_outside_dataset(out, dataset)
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; remove it or pick another output folder")
    found = folder_kind(out)
    if found != kind:
        made = f"was written as {found}" if found else f"was not written by drs (no {MARKER})"
        raise UserError(
            f"{out}: exists and {made}, so it is not replaced by {kind}; remove it or pick another output folder"
        )
    if suffixes is None:
        return
    others = sorted(
        p.name for p in out.iterdir() if p.name != MARKER and not (p.is_file() and p.name.endswith(suffixes))
    )
    if others:
        raise UserError(
            f"{out}: holds files drs did not write (e.g. {others[0]!r}); remove them or pick another output folder"
        )


@contextmanager
def publishing_dir(
    out: str | Path,
    replace: bool = False,
    kind: str | None = None,
    dataset: str | Path | None = None,
    suffixes: tuple[str, ...] | None = (".png",),
) -> Iterator[Path]:
    """Build a folder under the hidden sibling ``.<name>.partial`` (yielded) and rename it to ``out``
    when the block ends cleanly; on an error the partial folder is removed and ``out`` is untouched
    (a full disk becomes :func:`write_error` naming ``out``). One run at a time (:func:`output_lock`).
    ``kind`` names what the folder holds and is recorded in its :data:`MARKER`. With ``replace``, an
    existing ``out`` is replaced only if :func:`check_replaceable_dir` allows it (moved aside before
    the new folder takes its name, then deleted); without it, ``out`` must not exist (callers
    check, naming what to do). ``dataset``: the dataset folder, which ``out`` must stay out of;
    ``suffixes``: the files the replaced folder may hold, as in :func:`check_replaceable_dir`."""
    out = Path(out)
    if replace and kind is None:
        raise ValueError("publishing_dir: replace=True needs the folder's kind")
    partial = partial_name(out)
    with output_lock(out):
        if replace:
            check_replaceable_dir(out, kind, dataset, suffixes)
        else:
            check_outside_dataset(out, dataset)
        shutil.rmtree(partial, ignore_errors=True)
        try:
            with disk_full_errors(out):
                partial.mkdir(parents=True)
                if kind is not None:
                    marker = {"kind": kind, "written_by": f"drs-wsss {__version__}"}
                    (partial / MARKER).write_text(json.dumps(marker) + "\n")
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


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes (checkpoints, map stores, released weights)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
