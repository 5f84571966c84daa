"""The tar planner refuses hard links that lead outside what is extracted, before writing anything."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from drs.data.archives import safe_extract
from drs.errors import UserError

MAPPING = {"VOCdevkit/VOC2012": "."}


def _member(name: str, data: bytes | None = None, *, hardlink: str | None = None, symlink: str | None = None):
    info = tarfile.TarInfo(name)
    if hardlink is not None:
        info.type, info.linkname = tarfile.LNKTYPE, hardlink
    elif symlink is not None:
        info.type, info.linkname = tarfile.SYMTYPE, symlink
    else:
        info.size = len(data)
    return info, (io.BytesIO(data) if data is not None else None)


def _tar(path: Path, *members) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, data)
    return path


GOOD = ("VOCdevkit/VOC2012/JPEGImages/a.jpg", b"image a")


def _written(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if not p.is_dir()] if dest.exists() else []


def test_hard_link_inside_the_extracted_folders_is_kept_and_renamed(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar",
        _member(*GOOD),
        _member("VOCdevkit/VOC2012/JPEGImages/b.jpg", hardlink="VOCdevkit/VOC2012/JPEGImages/a.jpg"),
    )
    safe_extract(archive, tmp_path / "dest", MAPPING)
    assert (tmp_path / "dest/JPEGImages/b.jpg").read_bytes() == b"image a"


def test_hard_link_to_a_member_outside_the_extracted_folders_is_refused(tmp_path):
    # the target is in the archive but not extracted (not under a mapped folder): linking to it
    # would smuggle its content into the dataset
    archive = _tar(
        tmp_path / "escape.tar",
        _member("secrets/key.txt", b"secret"),
        _member(*GOOD),
        _member("VOCdevkit/VOC2012/JPEGImages/leak.jpg", hardlink="secrets/key.txt"),
    )
    with pytest.raises(UserError, match=r"'VOCdevkit/VOC2012/JPEGImages/leak.jpg' is a hard link to 'secrets/key.txt'"):
        safe_extract(archive, tmp_path / "dest", MAPPING)
    assert _written(tmp_path / "dest") == []


@pytest.mark.parametrize(
    "target,message",
    [("../../etc/passwd", "contains '..'"), ("/etc/passwd", "has an absolute path")],
)
def test_hard_link_to_a_refused_name_is_refused(tmp_path, target, message):
    archive = _tar(tmp_path / "bad.tar", _member(*GOOD), _member("VOCdevkit/VOC2012/JPEGImages/x.jpg", hardlink=target))
    with pytest.raises(UserError, match=f"member {target!r} {message}"):
        safe_extract(archive, tmp_path / "dest", MAPPING)
    assert _written(tmp_path / "dest") == []


def test_hard_link_to_an_escaping_symlink_is_refused(tmp_path):
    archive = _tar(
        tmp_path / "chain.tar",
        _member(*GOOD),
        _member("VOCdevkit/VOC2012/JPEGImages/up.jpg", symlink="../../../etc/passwd"),
        _member("VOCdevkit/VOC2012/JPEGImages/y.jpg", hardlink="VOCdevkit/VOC2012/JPEGImages/up.jpg"),
    )
    with pytest.raises(UserError, match="is a symlink to"):
        safe_extract(archive, tmp_path / "dest", MAPPING)
    assert _written(tmp_path / "dest") == []


def test_hard_link_outside_an_unextracted_folder_is_ignored(tmp_path):
    # members outside the mapping are skipped, links among them included
    archive = _tar(
        tmp_path / "other.tar",
        _member(*GOOD),
        _member("other/z.txt", hardlink="somewhere/else.txt"),
    )
    safe_extract(archive, tmp_path / "dest", MAPPING)
    assert [p.relative_to(tmp_path / "dest").as_posix() for p in _written(tmp_path / "dest")] == ["JPEGImages/a.jpg"]


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_device_or_fifo_member_is_refused_naming_it(tmp_path, kind):
    # left to tarfile's filter="data" (SpecialFileError), reported as a UserError naming the member
    special = tarfile.TarInfo("VOCdevkit/VOC2012/JPEGImages/pipe")
    special.type = kind
    archive = _tar(tmp_path / "special.tar", _member(*GOOD), (special, None))
    with pytest.raises(UserError, match=r"special\.tar: refusing .*JPEGImages/pipe"):
        safe_extract(archive, tmp_path / "dest", MAPPING)
    assert not (tmp_path / "dest/JPEGImages/pipe").exists()
