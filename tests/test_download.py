"""Tests for `drs download`: a local HTTP server stands in for the dataset hosts."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import threading
import zipfile
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

import drs.cli
from drs.data import download
from drs.data.archives import safe_extract
from drs.data.download import fetch, prepare_voc2012
from drs.data.voc import VOC_CLASSES
from drs.errors import UserError

TIMEOUT = 5  # seconds, for every socket in these tests


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(download, "RETRY_PAUSE_S", 0.01)


# --------------------------------------------------------------------------------------------
# A local file server with switches for the failure modes
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` unless told not to."""

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        server = self.server
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        with server.lock:
            server.requests[path].append(range_header)
            cut = server.cut.get(path, 0) > 0
            if cut:
                server.cut[path] -= 1
        if path not in server.files:
            self.send_error(404)
            return
        data = server.files[path]
        start = 0
        if range_header and path not in server.ignore_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        content_type = "text/html; charset=utf-8" if path in server.html else "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # promise the whole body, deliver half, hang up
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()


class FileServer:
    """Handle on the running server: add files, set switches, read request logs."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def add(self, path: str, data: bytes, *, cut: int = 0, ignore_range=False, html=False) -> str:
        """Serve ``data`` at ``path``; ``cut``: how many first requests are cut short."""
        self.httpd.files[path] = data
        self.httpd.cut[path] = cut
        if ignore_range:
            self.httpd.ignore_range.add(path)
        if html:
            self.httpd.html.add(path)
        return self.base + path

    def requests(self, path: str) -> list[str | None]:
        """The Range header (or None) of every request for ``path`` so far."""
        return list(self.httpd.requests[path])


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.cut, httpd.ignore_range, httpd.html = {}, {}, set(), set()
    httpd.requests = defaultdict(list)
    httpd.lock = threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield FileServer(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


# --------------------------------------------------------------------------------------------
# Small archives
# --------------------------------------------------------------------------------------------

IDS = ("a", "b", "c")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _tar(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def voc_files() -> dict[str, bytes]:
    root = "VOCdevkit/VOC2012"
    files = {f"{root}/JPEGImages/{i}.jpg": _jpeg(40 * n) for n, i in enumerate(IDS)}
    files.update({f"{root}/SegmentationClass/{i}.png": _png(n + 1) for n, i in enumerate(IDS)})
    files[f"{root}/ImageSets/Segmentation/train.txt"] = b"a\nb\n"
    files[f"{root}/ImageSets/Segmentation/val.txt"] = b"c\n"
    files["VOCdevkit/README.txt"] = b"outside the extracted folder\n"
    return files


def sbd_zip() -> bytes:
    return _zip({f"SegmentationClassAug/{i}.png": _png(n + 1) for n, i in enumerate(IDS)})


def saliency_zip() -> bytes:
    files = {f"saliency_map/{i}.png": _png(200) for i in IDS}
    files["__MACOSX/saliency_map/._a.png"] = b"resource fork"
    files["saliency_map/._b.png"] = b"resource fork"
    return _zip(files)


def serve_archives(server: FileServer, voc: bytes | None = None, **voc_switches) -> dict:
    """Serve the three archives; returns the archives config (voc md5 pinned, others null)."""
    voc = _tar(voc_files()) if voc is None else voc
    return {
        "voc": {
            "url": server.add("/VOCtrainval_11-May-2012.tar", voc, **voc_switches),
            "md5": _md5(voc),
            "extract": {"VOCdevkit/VOC2012": "."},
        },
        "sbd_aug": {
            "url": server.add("/s/x/SegmentationClassAug.zip", sbd_zip()) + "?dl=1",
            "md5": None,
            "extract": {"SegmentationClassAug": "SegmentationClassAug"},
        },
        "saliency": {
            "url": server.add("/folders/1I-456", saliency_zip()),
            "md5": None,
            "extract": {"saliency_map": "saliency_map"},
        },
    }


def _names(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------------------------
# Whole dataset
# --------------------------------------------------------------------------------------------


def test_prepare_builds_voc_layout(server, tmp_path, caplog):
    archives = serve_archives(server)
    out = tmp_path / "data" / "voc2012"
    with caplog.at_level(logging.INFO, logger="drs.download"):
        result = prepare_voc2012(out, archives, tmp_path / "downloads", timeout=TIMEOUT)

    assert result == out
    assert _names(out) == {
        *(f"JPEGImages/{i}.jpg" for i in IDS),
        *(f"SegmentationClass/{i}.png" for i in IDS),
        *(f"SegmentationClassAug/{i}.png" for i in IDS),
        *(f"saliency_map/{i}.png" for i in IDS),
        "ImageSets/Segmentation/train.txt",
        "ImageSets/Segmentation/val.txt",
        "ImageSets/Segmentation/train_aug.txt",
        "class_names.txt",
    }
    assert (out / "ImageSets/Segmentation/train_aug.txt").read_text().split() == ["a", "b"]
    assert (out / "class_names.txt").read_text().splitlines() == list(VOC_CLASSES)
    assert Image.open(out / "saliency_map/a.png").size == (4, 4)
    assert not (tmp_path / "data" / ".voc2012.partial").exists()
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "saliency.archive",
        "sbd_aug.zip",
        "voc.tar",
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("voc2012.archives.saliency.md5" in w for w in warnings)
    assert any("voc2012.archives.sbd_aug.md5" in w for w in warnings)
    assert not any("voc2012.archives.voc.md5" in w for w in warnings)

    with pytest.raises(UserError, match="already exists"):
        prepare_voc2012(out, archives, tmp_path / "downloads", timeout=TIMEOUT)


def test_cli_download(server, tmp_path, monkeypatch, capsys):
    archives = serve_archives(server)
    downloads = tmp_path / "downloads"
    out = tmp_path / "voc"
    argv = ["download", str(out), "--archives", json.dumps(archives), "--downloads", str(downloads)]
    assert drs.cli.main(argv) == 0
    assert (out / "ImageSets/Segmentation/train_aug.txt").read_text().split() == ["a", "b"]

    # @file form (a whole config), reusing the cached archives: no new requests
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"dataset": "voc2012", "voc2012": {"archives": archives}}))
    before = server.requests("/VOCtrainval_11-May-2012.tar")
    argv = ["download", str(tmp_path / "voc2"), "--archives", f"@{config}", "--downloads", str(downloads)]
    assert drs.cli.main(argv) == 0
    assert _names(tmp_path / "voc2") == _names(out)
    assert server.requests("/VOCtrainval_11-May-2012.tar") == before

    assert drs.cli.main(["download", str(tmp_path / "voc3"), "--archives", "{not json"]) == 2
    assert "--archives" in capsys.readouterr().err


def test_wrong_md5_leaves_nothing(server, tmp_path):
    archives = serve_archives(server)
    archives["voc"]["md5"] = "0" * 32
    out = tmp_path / "voc"
    with pytest.raises(UserError) as err:
        prepare_voc2012(out, archives, tmp_path / "downloads", timeout=TIMEOUT)
    actual = _md5(server.httpd.files["/VOCtrainval_11-May-2012.tar"])
    assert "0" * 32 in str(err.value) and actual in str(err.value)
    assert archives["voc"]["url"] in str(err.value)
    assert not (tmp_path / "downloads" / "voc.tar").exists()
    assert not (tmp_path / "downloads" / "voc.tar.part").exists()
    assert not out.exists() and not (tmp_path / ".voc.partial").exists()


# --------------------------------------------------------------------------------------------
# Unsafe archives
# --------------------------------------------------------------------------------------------


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _bad_archives(tmp_path: Path) -> dict[str, tuple[str, bytes, str]]:
    """case -> (archive to replace, archive bytes, the member the error must name)."""
    absolute = str(tmp_path / "abs-evil.txt")
    good = voc_files()
    return {
        "dotdot": ("voc", _tar({**good, "../evil.txt": b"x"}), "../evil.txt"),
        "absolute": ("voc", _tar({**good, absolute: b"x"}), absolute),
        "symlink": (
            "voc",
            _tar(good, [_symlink("VOCdevkit/VOC2012/JPEGImages/d.jpg", "/etc/passwd")]),
            "VOCdevkit/VOC2012/JPEGImages/d.jpg",
        ),
        "symlink-relative": (
            # inside the archive root, but outside the dataset once VOCdevkit/VOC2012 maps to "."
            "voc",
            _tar(good, [_symlink("VOCdevkit/VOC2012/up", "../../..")]),
            "VOCdevkit/VOC2012/up",
        ),
        "zip-dotdot": (
            "sbd_aug",
            _zip({"SegmentationClassAug/a.png": _png(1), "../evil": b"x"}),
            "../evil",
        ),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "symlink-relative", "zip-dotdot"])
def test_unsafe_archive_refused(server, tmp_path, case):
    name, data, member = _bad_archives(tmp_path)[case]
    archives = serve_archives(server)
    archives[name]["url"] = server.add(f"/bad-{case}.tar", data)
    archives[name]["md5"] = _md5(data)
    out = tmp_path / "data" / "voc"
    with pytest.raises(UserError) as err:
        prepare_voc2012(out, archives, tmp_path / "downloads", timeout=TIMEOUT)
    assert member in str(err.value)
    assert not out.exists() and not (tmp_path / "data" / ".voc.partial").exists()
    assert not list(tmp_path.rglob("evil*")) and not (tmp_path / "abs-evil.txt").exists()
    assert (tmp_path / "downloads" / f"{name}{download.archive_suffix(archives[name]['url'])}").exists()


def test_zip_symlink_refused(tmp_path):
    info = zipfile.ZipInfo("saliency_map/a.png")
    info.external_attr = 0o120777 << 16
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="saliency_map/a.png"):
        safe_extract(archive, tmp_path / "dest", {"saliency_map": "saliency_map"})
    assert not list((tmp_path / "dest").rglob("*"))


def test_extract_mapping_key_missing(tmp_path):
    archive = tmp_path / "sbd.zip"
    archive.write_bytes(sbd_zip())
    with pytest.raises(UserError, match=r"sbd\.zip.*saliency_map"):
        safe_extract(archive, tmp_path / "dest", {"saliency_map": "saliency_map"})


def test_extract_rejects_non_archive(tmp_path):
    page = tmp_path / "page.archive"
    page.write_bytes(b"<html>not an archive</html>")
    with pytest.raises(UserError, match="page.archive"):
        safe_extract(page, tmp_path / "dest", {".": "."})


# --------------------------------------------------------------------------------------------
# Downloads: resume, restart, refusal, cache, retries
# --------------------------------------------------------------------------------------------

PAYLOAD = os.urandom(300_000)


def test_resume_after_cut(server, tmp_path):
    url = server.add("/big.tar", PAYLOAD, cut=1)
    dest = tmp_path / "big.tar"
    assert fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT) == _md5(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests("/big.tar") == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert not (tmp_path / "big.tar.part").exists()


def test_restart_when_range_ignored(server, tmp_path):
    url = server.add("/big.tar", PAYLOAD, cut=1, ignore_range=True)
    dest = tmp_path / "big.tar"
    assert fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT) == _md5(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    requests = server.requests("/big.tar")
    assert len(requests) == 2 and requests[1] is not None


def test_complete_part_and_416(server, tmp_path):
    url = server.add("/big.tar", PAYLOAD)
    dest = tmp_path / "big.tar"
    (tmp_path / "big.tar.part").write_bytes(PAYLOAD)
    assert fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT) == _md5(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests("/big.tar") == [f"bytes={len(PAYLOAD)}-"]


def test_html_refused(server, tmp_path):
    url = server.add("/drive/folders/xyz", b"<html>sign in</html>", html=True)
    dest = tmp_path / "saliency.archive"
    with pytest.raises(UserError, match="web page") as err:
        fetch(url, dest, timeout=TIMEOUT)
    assert url in str(err.value)
    assert not dest.exists()


def test_cached_archive_not_downloaded_again(server, tmp_path):
    url = server.add("/big.tar", PAYLOAD)
    dest = tmp_path / "big.tar"
    fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT)
    fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT)
    fetch(url, dest, None, timeout=TIMEOUT)
    assert len(server.requests("/big.tar")) == 1

    dest.write_bytes(b"stale")  # a cached file with the wrong md5 is replaced
    assert fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT) == _md5(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests("/big.tar")) == 2


def test_retries_exhausted_keeps_part(server, tmp_path):
    url = server.add("/big.tar", PAYLOAD, cut=1000)
    dest = tmp_path / "big.tar"
    part = tmp_path / "big.tar.part"
    with pytest.raises(UserError) as err:
        fetch(url, dest, _md5(PAYLOAD), retries=2, timeout=TIMEOUT)
    assert url in str(err.value) and "bytes" in str(err.value)
    assert len(server.requests("/big.tar")) == 3
    assert not dest.exists()
    size = part.stat().st_size
    assert 0 < size < len(PAYLOAD)
    assert str(size) in str(err.value)

    server.httpd.cut["/big.tar"] = 0  # a later run resumes from the kept .part
    assert fetch(url, dest, _md5(PAYLOAD), timeout=TIMEOUT) == _md5(PAYLOAD)
    assert server.requests("/big.tar")[-1] == f"bytes={size}-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_file_url(tmp_path):
    source = tmp_path / "VOCtrainval.tar"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "downloads" / "voc.tar"
    dest.parent.mkdir()
    (tmp_path / "downloads" / "voc.tar.part").write_bytes(b"junk from an earlier try")
    assert fetch(source.as_uri(), dest, _md5(PAYLOAD)) == _md5(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(UserError, match="no such file"):
        fetch((tmp_path / "missing.tar").as_uri(), tmp_path / "missing.tar.out")


def test_archive_suffix():
    assert download.archive_suffix("http://h/VOCtrainval_11-May-2012.tar") == ".tar"
    assert download.archive_suffix("https://h/s/x/SegmentationClassAug.zip?dl=1") == ".zip"
    assert download.archive_suffix("https://h/a.TAR.GZ") == ".tar.gz"
    assert download.archive_suffix("https://drive.google.com/drive/folders/1I-456") == ".archive"


# --------------------------------------------------------------------------------------------
# The archives option: the config schema's archive entries, plus what it leaves open
# --------------------------------------------------------------------------------------------
GOOD_ARCHIVE = {"url": "http://127.0.0.1/voc.tar", "md5": None, "extract": {"VOCdevkit/VOC2012": "."}}


@pytest.mark.parametrize(
    "archives,message",
    [
        ({}, "voc2012.archives: expected a non-empty mapping"),
        ({"a b": GOOD_ARCHIVE}, "voc2012.archives.a b: archive names may use"),
        ({"voc": {**GOOD_ARCHIVE, "md5": "G" * 32}}, "config key 'voc2012.archives.voc.md5': 'GGGG"),
        ({"voc": {**GOOD_ARCHIVE, "md5": "0" * 31}}, "config key 'voc2012.archives.voc.md5'"),
        ({"voc": {**GOOD_ARCHIVE, "extract": {}}}, "config key 'voc2012.archives.voc.extract'"),
        ({"voc": {"url": "http://x/y.tar"}}, "config key 'voc2012.archives.voc.extract': required but missing"),
        ({"voc": {**GOOD_ARCHIVE, "sha": "x"}}, "config key 'voc2012.archives.voc.sha': unknown key"),
        ({"voc": "http://x/y.tar"}, "config key 'voc2012.archives.voc'"),
        ({"voc": {**GOOD_ARCHIVE, "url": ""}}, "voc2012.archives.voc.url: missing"),
    ],
)
def test_bad_archives_option_names_the_key(archives, message):
    with pytest.raises(UserError) as err:
        download.validate_archives(archives)
    assert message in str(err.value)


def test_archives_option_accepts_the_schema_s_entries():
    archives = {"voc": GOOD_ARCHIVE, "sal.v2": {**GOOD_ARCHIVE, "md5": "0123456789abcdef" * 2}}
    assert download.validate_archives(archives) == archives
