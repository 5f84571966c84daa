"""`drs download`: fetch, verify and extract PASCAL VOC 2012 (+ SBD masks, saliency maps).

The archives are described by the ``voc2012.archives`` section of the config::

    <name>:
      url: http://... | https://... | file:///...
      md5: <32 hex digits> | null          # null: computed, logged, and the user is asked to pin it
      extract: {<folder in archive>: <folder in dataset root, "." = the root>}

Downloads are resumable (``<file>.part`` plus an HTTP ``Range`` request), retried when a
transfer is cut short, and checksummed over the whole file. Extraction refuses unsafe archives
(absolute paths, ``..``, links leading outside) before writing anything, device files through
tarfile's ``filter="data"``, and the dataset folder appears atomically: it is assembled in a hidden staging folder and renamed.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from drs.data.voc import CLASS_NAMES_FILE, SPLIT_DIR, VOC_CLASSES
from drs.errors import UserError
from drs.fileio import publishing_dir
from drs.progress import TransferProgress

log = logging.getLogger("drs.download")

MIB = 1 << 20
RETRY_PAUSE_S = 0.2
USER_AGENT = "drs-wsss-download/1"
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")

# Failures worth another try: the connection dropped, stalled or never opened.
_TRANSIENT = (http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError)


class _CutShort(Exception):
    """A transfer ended early; the bytes that did arrive are in the ``.part`` file."""


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


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
) -> str:
    """Download ``url`` to ``dest`` and return the file's md5 hex digest.

    The bytes go to ``dest + ".part"`` first and are moved to ``dest`` only once complete and
    verified. An existing ``dest`` with the right md5 (any md5 when ``md5`` is None) is kept as
    is. A leftover ``.part`` is resumed with a ``Range`` request. A transfer cut short is tried
    again up to ``retries`` more times; after that the ``.part`` stays for a later resume.
    ``name`` (default: the file name up to its first dot) is the config entry named in the
    warning about an unpinned md5.
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
            "%s: md5 %s is not pinned; to verify later downloads, set it under voc2012.archives.%s.md5",
            url,
            digest,
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


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def safe_extract(archive: str | Path, dest: str | Path, mapping: Mapping[str, str]) -> None:
    """Extract the folders named by ``mapping`` from a tar or zip archive into ``dest``.

    ``mapping`` maps a folder inside the archive to a folder inside ``dest`` ("." = ``dest``).
    Every member is checked before anything is written; one unsafe member (absolute path,
    ``..``, a link leading outside ``dest``, a zip symlink or device) refuses the whole archive.
    A tar's device files and fifos are refused by tarfile's ``filter="data"`` as extraction
    reaches them (prepare_voc2012 then removes its staging folder). ``__MACOSX/`` and ``._*``
    entries are skipped.
    """
    archive, dest = Path(archive), Path(dest)
    rules = _normalise_mapping(archive, mapping)
    dest.mkdir(parents=True, exist_ok=True)
    if tarfile.is_tarfile(archive):
        _extract_tar(archive, dest, rules)
    elif zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, rules)
    else:
        raise UserError(f"{archive}: not a tar or zip archive")


def _normalise_mapping(archive: Path, mapping: Mapping[str, str]) -> list[tuple[str, str]]:
    """(archive folder, dataset folder) pairs, normalised, longest archive folder first."""
    if not mapping:
        raise UserError(f"{archive}: nothing to extract (empty extract mapping)")
    rules = []
    for key, value in mapping.items():
        for text in (key, value):
            if not isinstance(text, str) or _is_absolute(text) or ".." in _split(text):
                raise UserError(f"{archive}: bad extract entry {key!r}: {value!r}")
        rules.append((_normalise(key), _normalise(value)))
    return sorted(rules, key=lambda rule: -len(rule[0]))


def _split(name: str) -> list[str]:
    return re.split(r"[/\\]", name)


def _normalise(name: str) -> str:
    """A relative member name without empty or "." components ("" for the root)."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None


def _check_name(archive: Path, name: str) -> None:
    """Refuse member names that are absolute or climb out with ``..``."""
    if _is_absolute(name):
        raise UserError(f"{archive}: refusing the archive: member {name!r} has an absolute path")
    if ".." in _split(name):
        raise UserError(f"{archive}: refusing the archive: member {name!r} contains '..'")


def _is_junk(name: str) -> bool:
    """macOS resource forks and metadata folders."""
    parts = name.split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._")


def _map_name(name: str, rules: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(rule key, path inside dest) for a member under one of the rule keys, else None."""
    for key, value in rules:
        if key == "":
            rel = name
        elif name == key:
            rel = ""
        elif name.startswith(key + "/"):
            rel = name[len(key) + 1 :]
        else:
            continue
        return key, posixpath.join(value, rel).strip("/") if value else rel
    return None


def _escapes(location: str, link: str) -> bool:
    """Whether a symlink at ``location`` (relative to dest) pointing to ``link`` leaves dest."""
    if _is_absolute(link):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(location), link))
    return resolved == ".." or resolved.startswith("../")


def _missing_keys(archive: Path, rules: list[tuple[str, str]], matched: set[str]) -> None:
    """A mapping key no member falls under means the wrong archive (or a wrong config)."""
    for key, _ in rules:
        if key not in matched:
            raise UserError(f"{archive}: no member under {key or '.'!r}; is this the right archive?")


def _plan_tar(archive: Path, tar: tarfile.TarFile, rules) -> list[tarfile.TarInfo]:
    """Check every member and return the selected ones, renamed to their place in dest.

    What tarfile's ``filter="data"`` refuses only while extracting, or not at all, is refused
    here before anything is written: names with ``..`` or an absolute path (the filter strips a
    leading "/"), symlinks leaving dest once renamed, hard links to members that are not
    extracted. Device files and fifos are left to the filter."""
    selected, matched = [], set()
    for member in tar.getmembers():
        _check_name(archive, member.name)
        name = _normalise(member.name)
        mapped = _map_name(name, rules)
        location = mapped[1] if mapped else name
        if member.issym() and _escapes(location, member.linkname):
            raise UserError(
                f"{archive}: refusing the archive: member {member.name!r} is a symlink to "
                f"{member.linkname!r}, outside the destination"
            )
        linkname = member.linkname
        if member.islnk():
            _check_name(archive, member.linkname)
            if mapped:
                target = _map_name(_normalise(member.linkname), rules)
                if target is None:
                    raise UserError(
                        f"{archive}: refusing the archive: member {member.name!r} is a hard link "
                        f"to {member.linkname!r}, outside the extracted folders"
                    )
                linkname = target[1]
        if mapped is None or _is_junk(name):
            continue
        matched.add(mapped[0])
        if location:
            selected.append(member.replace(name=location, linkname=linkname, deep=False))
    _missing_keys(archive, rules, matched)
    return selected


def _extract_tar(archive: Path, dest: Path, rules) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = _plan_tar(archive, tar, rules)
            log.info("%s: extracting %d members into %s", archive, len(members), dest)
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as err:
        member = getattr(err, "tarinfo", None)
        raise UserError(f"{archive}: refusing member {getattr(member, 'name', '?')!r}: {err}") from err
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"{archive}: cannot extract: {err}") from err


def _plan_zip(archive: Path, zf: zipfile.ZipFile, rules) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every member and return (member, path inside dest) for the selected ones."""
    selected, matched = [], set()
    for info in zf.infolist():
        _check_name(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UserError(f"{archive}: refusing the archive: member {info.filename!r} is a symlink")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise UserError(f"{archive}: refusing the archive: member {info.filename!r} is a device or fifo")
        name = _normalise(info.filename)
        mapped = _map_name(name, rules)
        if mapped is None or _is_junk(name):
            continue
        matched.add(mapped[0])
        if mapped[1]:
            selected.append((info, mapped[1]))
    _missing_keys(archive, rules, matched)
    return selected


def _extract_zip(archive: Path, dest: Path, rules) -> None:
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _plan_zip(archive, zf, rules)
            log.info("%s: extracting %d members into %s", archive, len(members), dest)
            for info, location in members:
                target = dest / location
                if not target.resolve().is_relative_to(root):  # e.g. through a symlink on disk
                    raise UserError(f"{archive}: refusing member {info.filename!r}: it leads outside {dest}")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, MIB)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{archive}: cannot extract: {err}") from err


# --------------------------------------------------------------------------------------------
# Dataset assembly
# --------------------------------------------------------------------------------------------


def archive_suffix(url: str) -> str:
    """The archive suffix of a URL's file name (".tar", ".zip", ...), or ".archive"."""
    basename = posixpath.basename(urlsplit(url).path).lower()
    for suffix in ARCHIVE_SUFFIXES:
        if basename.endswith(suffix):
            return suffix
    return ".archive"


def validate_archives(archives: object) -> dict[str, dict]:
    """Check the ``voc2012.archives`` mapping against the config schema (each entry: url, md5,
    extract), plus what the schema leaves open (the workflow allows no archives at all, a
    download needs some; names become file names; a url must not be empty); returns it as a
    plain dict."""
    from drs.config import check_against
    from drs.settings import schema as config_schema

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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


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
        import yaml  # YAML is a superset of JSON; only needed for files

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


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_parser(sub) -> None:
    """Register the ``download`` subcommand."""
    parser = sub.add_parser(
        "download",
        help="download, verify and extract PASCAL VOC 2012 + SBD SegmentationClassAug + saliency maps",
        description=(
            "download, verify and extract PASCAL VOC 2012 + SBD SegmentationClassAug + saliency "
            "maps into a VOC-layout folder"
        ),
    )
    parser.add_argument("out", type=Path, help="dataset folder to create (must not exist)")
    parser.add_argument(
        "--archives",
        required=True,
        help="the voc2012.archives mapping as JSON text, or @path to a JSON/YAML file holding it",
    )
    parser.add_argument(
        "--downloads",
        type=Path,
        default=Path("results/downloads"),
        help="folder for the downloaded archives (kept for reruns; default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        help="extra tries when a transfer is cut short (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``drs download``."""
    archives = load_archives_option(args.archives)
    prepare_voc2012(args.out, archives, args.downloads, retries=args.retries)
    return 0
