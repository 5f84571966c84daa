"""Archives unpacked safely: members mapped into a folder, nothing written outside it.

:func:`safe_extract` unpacks the members of a tar or zip archive that a mapping names (archive
prefix -> folder of the dataset), refusing absolute paths, ``..``, and links that lead outside the
target, and skipping junk (``__MACOSX``, ``.DS_Store``).
"""

from __future__ import annotations

import logging
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from drs.errors import UserError

log = logging.getLogger("drs.download")

COPY_CHUNK = 1 << 20  # bytes a zip member is copied by

ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


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
                    shutil.copyfileobj(source, out, COPY_CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{archive}: cannot extract: {err}") from err


def archive_suffix(url: str) -> str:
    """The archive suffix of a URL's file name (".tar", ".zip", ...), or ".archive"."""
    basename = posixpath.basename(urlsplit(url).path).lower()
    for suffix in ARCHIVE_SUFFIXES:
        if basename.endswith(suffix):
            return suffix
    return ".archive"
