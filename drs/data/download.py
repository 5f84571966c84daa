"""`drs download`: fetch, verify and extract PASCAL VOC 2012 (+ SBD masks, saliency maps).

The archives are described by the ``voc2012.archives`` section of the config::

    <name>:
      url: http://... | https://... | file:///...
      md5: <32 hex digits> | null          # null: computed, logged, and the user is asked to pin it
      extract: {<folder in archive>: <folder in dataset root, "." = the root>}

Downloads are resumable (``<file>.part`` plus an HTTP ``Range`` request), retried when a
transfer is cut short, and checksummed over the whole file. Extraction refuses unsafe archives
(absolute paths, ``..``, links leading outside) before writing anything, device files through
tarfile's ``filter="data"``, and the dataset folder appears atomically: it is assembled in a hidden
staging folder and renamed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml  # YAML is a superset of JSON; only needed for files

from drs.config.schema import schema as config_schema
from drs.config.validate import check_against
from drs.data.archives import archive_suffix, safe_extract
from drs.data.voc import CLASS_NAMES_FILE, SPLIT_DIR, VOC_CLASSES
from drs.errors import UserError
from drs.util.files import publishing_dir
from drs.util.progress import TransferProgress

log = logging.getLogger("drs.download")
MIB = 1 << 20
RETRY_PAUSE_S = 0.2
USER_AGENT = "drs-wsss-download/1"
# Failures worth another try: the connection dropped, stalled or never opened.
_TRANSIENT = (http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError)


class _CutShort(Exception):
    """A transfer ended early; the bytes that did arrive are in the ``.part`` file."""


def file_md5(path: str | Path, chunk: int = MIB) -> str:
    """The md5 hex digest of a file's contents."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    retries: int = 3,
    timeout: float = 60,
    chunk: int = MIB,
    *,
    name: str | None = None,
    key: str = "voc2012.archives",
) -> str:
    """Download ``url`` to ``dest`` and return the file's md5 hex digest.

    The bytes go to ``dest + ".part"`` first and are moved to ``dest`` only once complete and
    verified. An existing ``dest`` with the right md5 (any md5 when ``md5`` is None) is kept as
    is. A leftover ``.part`` is resumed with a ``Range`` request. A transfer cut short is tried
    again up to ``retries`` more times; after that the ``.part`` stays for a later resume.
    ``name`` (default: the file name up to its first dot) is the config entry under ``key`` named
    in the warning about an unpinned md5.
    """
    dest = Path(dest)
    expected = md5.lower() if md5 else None
    if dest.exists():
        digest = file_md5(dest)
        if expected is None or digest == expected:
            log.info("%s: already downloaded (md5 %s), skipping", dest, digest)
            return digest
        log.warning("%s: md5 %s, expected %s; downloading it again", dest, digest, expected)

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _download_with_retries(url, part, retries, timeout, chunk)

    digest = file_md5(part)
    if expected is not None and digest != expected:
        part.unlink()
        raise UserError(
            f"checksum mismatch for {url}: expected md5 {expected}, got {digest} "
            f"(the download was deleted; check the url and md5 in the config)"
        )
    if expected is None:
        log.warning(
            "%s: md5 %s is not pinned; to verify later downloads, set it under %s.%s.md5",
            url,
            digest,
            key,
            name or dest.name.split(".")[0],
        )
    os.replace(part, dest)
    log.info("%s: saved (md5 %s)", dest, digest)
    return digest


def _download_with_retries(url: str, part: Path, retries: int, timeout: float, chunk: int) -> None:
    """Run :func:`_transfer` until the ``.part`` file is complete or the tries run out."""
    attempts = max(0, retries) + 1
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, timeout, chunk)
            return
        except (_CutShort, *_TRANSIENT) as err:
            reason = _describe(err)
            if attempt == attempts:
                have = part.stat().st_size if part.exists() else 0
                raise UserError(
                    f"download of {url} failed after {attempts} tries ({reason}); "
                    f"{have} bytes arrived and are kept in {part} for a later resume"
                ) from err
            log.warning("%s: %s; retrying (%d/%d)", url, reason, attempt, attempts - 1)
            time.sleep(RETRY_PAUSE_S * attempt)


def _describe(err: BaseException) -> str:
    """A one-line reason for a failed transfer."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return f"cannot connect: {err.reason}"
    return str(err) or type(err).__name__


def _transfer(url: str, part: Path, timeout: float, chunk: int) -> None:
    """One request: append to (HTTP 206) or rewrite (any full reply) ``part``.

    Raises :class:`_CutShort` or a transient network error when the transfer ends early.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        with err:
            _handle_http_error(url, part, offset, err)
        return
    except urllib.error.URLError as err:
        if isinstance(err.reason, FileNotFoundError):
            raise UserError(f"{url}: no such file") from err
        raise

    with response:
        _refuse_web_page(url, response.headers.get_content_type())
        status = getattr(response, "status", None)  # None for file:// URLs
        resumed = status == 206 and _range_start(response.headers.get("Content-Range")) == offset
        if offset and resumed:
            log.info("%s: resuming at %.1f MiB", url, offset / MIB)
        elif offset:
            log.info("%s: the server sent the whole file; starting over", url)
            offset = 0
        length = _int_or_none(response.headers.get("Content-Length"))
        total = offset + length if length is not None else None
        with open(part, "ab" if offset else "wb") as out:
            received = _copy_stream(
                response, out, chunk, TransferProgress(log, url, offset, total, sys.stderr.isatty())
            )
    if length is not None and received < length:
        raise _CutShort(f"transfer cut short: {received} of {length} bytes in this reply")


def _handle_http_error(url: str, part: Path, offset: int, err: urllib.error.HTTPError) -> None:
    """Decide what an HTTP error reply means: done (416), retry (5xx, 429) or give up."""
    if err.code == 416 and offset:
        total = _range_total(err.headers.get("Content-Range"))
        if total is None or total == offset:
            log.info("%s: the .part file is already complete", url)
            return
        part.unlink()
        raise _CutShort(f"the .part file ({offset} bytes) does not fit a {total}-byte file")
    if err.code >= 500 or err.code == 429:
        raise _CutShort(f"HTTP {err.code} {err.reason}")
    raise UserError(f"{url}: HTTP {err.code} {err.reason}") from err


def _refuse_web_page(url: str, content_type: str) -> None:
    """A text/html reply is a web page (a login, a share or folder view), not an archive."""
    if content_type == "text/html":
        raise UserError(
            f"{url} returned a web page (text/html), not an archive; links to Google Drive "
            f"folders or share pages are not direct downloads. Download the archive by hand "
            f"and set the url to a direct link or a file:// URL"
        )


def _range_start(content_range: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``, or None."""
    match = re.match(r"bytes\s+(\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _range_total(content_range: str | None) -> int | None:
    """The total of ``Content-Range: bytes .../TOTAL``, or None."""
    match = re.search(r"/(\d+)\s*$", content_range or "")
    return int(match.group(1)) if match else None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _copy_stream(source, out, chunk: int, progress: TransferProgress) -> int:
    """Copy ``source`` to ``out`` in chunks, reporting progress; returns the bytes copied."""
    received = 0
    try:
        while block := source.read(chunk):
            out.write(block)
            received += len(block)
            progress.update(progress.start + received)
    finally:
        out.flush()
        progress.close(progress.start + received)
    return received


def validate_archives(archives: object) -> dict[str, dict]:
    """Check the ``voc2012.archives`` mapping against the config schema (each entry: url, md5,
    extract), plus what the schema leaves open (the workflow allows no archives at all, a
    download needs some; names become file names; a url must not be empty); returns it as a
    plain dict."""
    where = "voc2012.archives"
    if not isinstance(archives, Mapping) or not archives:
        raise UserError(f"{where}: expected a non-empty mapping of name -> {{url, md5, extract}}")
    for name in archives:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise UserError(f"{where}.{name}: archive names may use letters, digits, '_', '-' and '.'")
    schema = config_schema()
    voc2012 = schema["properties"]["voc2012"]
    check_against(
        {"voc2012": {"archives": dict(archives)}}, {"$defs": schema["$defs"], "properties": {"voc2012": voc2012}}
    )
    for name, spec in archives.items():
        if not spec["url"]:
            raise UserError(f"{where}.{name}.url: missing")
    return dict(archives)


def prepare_voc2012(
    out: str | Path,
    archives: Mapping[str, Mapping],
    downloads_dir: str | Path,
    retries: int = 3,
    *,
    timeout: float = 60,
) -> Path:
    """Download, verify and extract the archives into a new VOC-layout folder ``out``.

    Archives are kept in ``downloads_dir`` (so a rerun skips or resumes them). The folder is
    assembled in ``.<out>.partial`` next to ``out`` and renamed when complete; on failure the
    staging folder is removed. Adds ``ImageSets/Segmentation/train_aug.txt`` (the
    SegmentationClassAug ids not in val) and ``class_names.txt`` when missing.
    """
    out, downloads_dir = Path(out), Path(downloads_dir)
    archives = validate_archives(archives)
    if out.exists():
        raise UserError(f"{out} already exists; remove it first to download the dataset again")
    downloads_dir.mkdir(parents=True, exist_ok=True)

    files = {}
    for name, spec in archives.items():
        files[name] = downloads_dir / f"{name}{archive_suffix(spec['url'])}"
        fetch(spec["url"], files[name], spec.get("md5"), retries=retries, timeout=timeout, name=name)

    with publishing_dir(out) as staging:
        for name, spec in archives.items():
            safe_extract(files[name], staging, spec["extract"])
        _complete_layout(staging)
    log.info("dataset ready in %s", out)
    return out


def _complete_layout(root: Path) -> None:
    """Add train_aug.txt and class_names.txt when the archives did not provide them."""
    aug = root / "SegmentationClassAug"
    splits = root / SPLIT_DIR
    train_aug = splits / "train_aug.txt"
    if aug.is_dir() and (splits / "val.txt").is_file() and not train_aug.exists():
        val = set((splits / "val.txt").read_text().split())
        ids = sorted(path.stem for path in aug.glob("*.png") if path.stem not in val)
        train_aug.write_text("".join(f"{image_id}\n" for image_id in ids))
        log.info("wrote %s (%d ids)", train_aug, len(ids))
    names = root / CLASS_NAMES_FILE
    if not names.exists():
        names.write_text("".join(f"{name}\n" for name in VOC_CLASSES))


def load_archives_option(text: str) -> dict:
    """Parse ``--archives``: JSON text, or ``@path`` to a JSON/YAML file.

    The file may hold the archives mapping itself, or a whole config with ``voc2012.archives``.
    """
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            content = path.read_text()
        except OSError as err:
            raise UserError(f"--archives: cannot read {path}: {err}") from err

        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError as err:
            raise UserError(f"--archives: {path} is not valid JSON or YAML: {err}") from err
        if isinstance(data, Mapping) and isinstance(data.get("voc2012"), Mapping):
            data = data["voc2012"].get("archives")
        return validate_archives(data)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--archives: not valid JSON ({err}); give JSON text or @path") from err
    return validate_archives(data)


def download_file(out: str | Path, spec: Mapping, name: str, retries: int = 3, *, timeout: float = 60) -> Path:
    """One released file (a ``weights:`` entry of the config: ``url`` and ``md5``) to ``out``,
    resumable and checksummed as :func:`fetch`; an existing ``out`` with the right md5 is kept."""
    check_against(dict(spec), config_schema()["$defs"]["file"])
    fetch(spec["url"], out, spec.get("md5"), retries=retries, timeout=timeout, name=name, key="weights")
    return Path(out)
