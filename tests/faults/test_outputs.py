"""Faults of outputs (defects 3, 7, 8 in part, 9 of the reliability issue).

- A folder is replaced only if drs published it (its marker file), never the dataset's masks or
  saliency maps, and nothing is written in the dataset folder.
- One run at a time per output: a second one is told that another run is writing it.
- A full disk (a 1 MiB tmpfs; where mounting is not allowed, a write raising ENOSPC) stops a stage
  at the first failed write with one line naming the output and "no space left", its partial
  output removed and what was there before kept.
- Pool workers die with their parent, whether it is terminated (SIGTERM) or killed (SIGKILL).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from drs.cli import main
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from helpers import REPO

SPEC = SynthSpec(num_train=6, num_val=2, image_size=48, object_size=(20, 30), num_classes=3)
CLASSIFIER = {
    "width": 0.125,
    "batch_norm": True,
    "extra_batch_norm": True,
    "stages": 3,
    "pretrained": "none",
    "input_size": 48,
    "crop_size": 40,
    "epochs": 1,
    "batch_size": 4,
}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(folder: Path) -> list[str]:
    """Hidden files a run leaves beside its output (partial output, lock, moved-aside folder)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


def _write_store(path: Path, root: Path, split: str = "train") -> Path:
    voc = VOCDataset(root, split)
    with MapStoreWriter(
        path, class_names=voc.class_names, scales=[48], flip=False, stage="cam", split=split, dataset=str(root)
    ) as writer:
        for image_id in voc.ids:
            mask = voc.load_mask(image_id)
            classes = voc.labels(image_id)
            writer.add(image_id, classes, np.stack([(mask == c).astype(np.float32) for c in classes]))
    return path


@pytest.fixture(scope="module")
def data(synth_dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("outputs")
    root = synth_dataset(SPEC)
    return root, _write_store(base / "cam.h5", root)


@pytest.fixture
def own_data(data, tmp_path):
    """A copy of the dataset and its store, for the tests that the old code made destroy it."""
    root = Path(shutil.copytree(data[0], tmp_path / "own" / "synth"))
    return root, _write_store(tmp_path / "own" / "cam.h5", root)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, data):
    """An untrained classifier checkpoint (the faults here are in writing, not in the maps)."""
    from drs.config.settings import ClassifierSettings
    from drs.store.model_files import save_model
    from drs.training.classifier import build_classifier

    root, _ = data
    settings = ClassifierSettings.from_dict(CLASSIFIER)
    model = build_classifier(len(VOCDataset(root, "train").class_names) - 1, settings, "learnable", None)
    record = {
        "kind": "classifier",
        "model_config": model.config,
        "settings": {},
        "drs": "learnable",
        "delta": None,
        "class_names": list(VOCDataset(root, "train").class_names),
        "dataset": str(root),
        "split": "train",
    }
    return save_model(model, record, tmp_path_factory.mktemp("classifier"))


# -- a small full disk -----------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (skipped where mounting is not permitted), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); the simulated tests cover it"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave_kib: int) -> None:
    """Fill ``disk`` but for about ``leave_kib`` KiB."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave_kib * 1024))


# -- 3: which folders are replaced ---------------------------------------------------------------
def test_pseudo_labels_never_replace_the_dataset_masks(own_data, capsys):
    root, store = own_data
    masks = root / "SegmentationClass"
    before = _files(masks)
    assert main(["pseudo-labels", str(store), "--dataset", str(root), "--out", str(masks), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert str(masks) in err and "dataset" in err and len(_error_lines(err)) == 1
    assert _files(masks) == before
    assert main(["pseudo-labels", str(store), "--dataset", str(root), "--out", str(root / "labels")]) == 2
    assert not (root / "labels").exists() and not _leftovers(root)  # nothing new in the dataset folder


def test_pseudo_labels_replace_only_their_own_folder(data, tmp_path, capsys):
    root, store = data
    copy = tmp_path / "masks"  # a folder of label PNGs that drs did not write
    copy.mkdir()
    for path in (root / "SegmentationClass").iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    before = _files(copy)
    assert main(["pseudo-labels", str(store), "--dataset", str(root), "--out", str(copy), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert str(copy) in err and "not written by drs" in err
    assert _files(copy) == before
    out = tmp_path / "labels"
    for _ in range(2):  # its own folder: written, then replaced
        assert main(["pseudo-labels", str(store), "--dataset", str(root), "--out", str(out), "--workers", "1"]) == 0
    assert len(list(out.glob("*.png"))) == len(VOCDataset(root, "train"))
    assert _leftovers(tmp_path) == []


def test_evaluate_never_replaces_the_saliency_maps(own_data, tmp_path, monkeypatch, capsys):
    """The guard, not the model, is under test: a stand-in predictor labels everything background."""
    import drs.evaluation.evaluate

    root, _ = own_data
    names = list(VOCDataset(root, "val").class_names)

    class Background:
        def __init__(self, checkpoint, scales=(1.0,), flip=False):
            self.class_names, self.scales, self.record = names, tuple(scales), {}
            self.device = SimpleNamespace(type="cpu")

        def scores(self, image):  # everything background
            scores = np.zeros((len(names), *image.shape[:2]), np.float32)
            scores[0] = 1.0
            return scores

    monkeypatch.setattr(drs.evaluation.evaluate, "Predictor", Background)
    saliency = root / "saliency_map"
    before = _files(saliency)
    args = [
        "evaluate",
        "--model",
        "model.pt",
        "--dataset",
        str(root),
        "--split",
        "val",
        "--out",
        str(tmp_path / "m.json"),
    ]
    assert main([*args, "--predictions", str(saliency)]) == 2
    err = capsys.readouterr().err
    assert str(saliency) in err and len(_error_lines(err)) == 1
    assert _files(saliency) == before
    assert main([*args, "--predictions", str(tmp_path / "val")]) == 0
    assert main([*args, "--predictions", str(tmp_path / "val")]) == 0  # its own folder is replaced
    assert len(list((tmp_path / "val").glob("*.png"))) == len(VOCDataset(root, "val"))
    assert main([*args[:-1], str(root / "m.json"), "--predictions", str(tmp_path / "p")]) == 2  # metrics in the dataset
    assert not (root / "m.json").exists()


def test_extract_maps_never_writes_in_the_dataset(data, classifier, capsys):
    root, _ = data
    out = root / "JPEGImages" / "maps.h5"
    assert (
        main(
            [
                "extract-maps",
                "--model",
                str(classifier),
                "--dataset",
                str(root),
                "--split",
                "val",
                "--out",
                str(out),
                "--scales",
                "48",
            ]
        )
        == 2
    )
    assert "inside the dataset folder" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(out.parent)


# -- 8 (part): one writer per output ---------------------------------------------------------------
def test_second_map_store_writer_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    options = dict(class_names=["background", "a"], scales=[8], flip=False, stage="cam", split="train", dataset="d")
    with MapStoreWriter(path, **options) as first:
        first.add("x", [1], np.ones((1, 8, 8), np.float32))
        with pytest.raises(UserError, match="another run is writing it"):
            MapStoreWriter(path, **options)
        first.add("y", [1], np.ones((1, 8, 8), np.float32))
    with MapStore(path) as store:
        assert store.ids == ["x", "y"]
    assert _leftovers(tmp_path) == []


# -- 7 and 8: pseudo-labels in a child process -------------------------------------------------------
SLOW_RUN = """
import sys, time
import drs.labels.writer as writer
rule = writer.pseudo_label
writer.pseudo_label = lambda *args, **kwargs: (time.sleep(0.25), rule(*args, **kwargs))[1]  # a few seconds in all
from drs.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A dataset (split list and class names) and a store of 48 small images: with each label
    slowed to 0.25 s (SLOW_RUN, forked into the workers), two workers take about 6 s."""
    root = tmp_path_factory.mktemp("many")
    ids = [f"img{i:03d}" for i in range(48)]
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "class_names.txt").write_text("background\na\nb\n")
    with MapStoreWriter(
        root.parent / "many.h5",
        class_names=["background", "a", "b"],
        scales=[32],
        flip=False,
        stage="cam",
        split="train",
        dataset=str(root),
    ) as writer:
        for image_id in ids:
            writer.add(image_id, [1, 2], np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32))
    return root, root.parent / "many.h5"


def _start_slow_run(store: Path, out: Path, root: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-c",
        SLOW_RUN,
        "pseudo-labels",
        str(store),
        "--out",
        str(out),
        "--dataset",
        str(root),
        "--saliency",
        "none",
        "--workers",
        "2",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_workers(run: subprocess.Popen, out: Path, timeout: float = 60) -> list[psutil.Process]:
    """The run's two workers, once they have written a first label into the partial folder."""
    partial = out.parent / f".{out.name}.partial"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        children = psutil.Process(run.pid).children()
        if len(children) >= 2 and partial.is_dir() and any(partial.glob("*.png")):
            return children
        time.sleep(0.05)
    raise AssertionError(f"no two workers writing {partial} within {timeout} s")


def _kill(*processes) -> None:
    for process in processes:
        try:
            process.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_pseudo_labels_leave_no_workers(many, tmp_path, signum):
    root, store = many
    out = tmp_path / "pl"
    run = _start_slow_run(store, out, root)
    workers = []
    try:
        workers = _wait_for_workers(run, out)
        run.send_signal(signum)
        run.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
        assert not out.exists()
        if signum == signal.SIGTERM:  # cleaned up: no partial folder, no lock, exit status 128 + 15
            assert run.returncode == 143 and _leftovers(tmp_path) == []
    finally:
        _kill(run, *workers)
    # what a killed run leaves (a hidden partial folder, an unlocked lock file) does not block the next
    assert (
        main(
            [
                "pseudo-labels",
                str(store),
                "--out",
                str(out),
                "--dataset",
                str(root),
                "--saliency",
                "none",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert len(list(out.glob("*.png"))) == 48 and _leftovers(tmp_path) == []


def test_second_pseudo_labels_run_is_refused(many, tmp_path, capsys):
    root, store = many
    out = tmp_path / "pl"
    run = _start_slow_run(store, out, root)
    workers = []
    try:
        workers = _wait_for_workers(run, out)
        assert (
            main(
                [
                    "pseudo-labels",
                    str(store),
                    "--out",
                    str(out),
                    "--dataset",
                    str(root),
                    "--saliency",
                    "none",
                    "--workers",
                    "1",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "another run is writing it" in err and str(out) in err
        _, first_err = run.communicate(timeout=60)
        assert run.returncode == 0, first_err
    finally:
        _kill(run, *workers)
    assert len(list(out.glob("*.png"))) == 48 and _leftovers(tmp_path) == []


# -- 9: a full disk ------------------------------------------------------------------------------
WRITE_STORE = """
import sys
import numpy as np
from drs.store.writer import MapStoreWriter

rng = np.random.default_rng(0)
with MapStoreWriter(sys.argv[1], class_names=["background", "a", "b"], scales=[64], flip=False, stage="cam",
                    split="train", dataset="d") as writer:
    for i in range(200):  # 1.6 MB of maps that do not compress
        writer.add(f"img{i:03d}", [1, 2], rng.random((2, 64, 64)))
"""


@pytest.mark.parametrize("leave_kib", [8, 300, 700])
def test_map_store_on_a_full_disk(small_disk, leave_kib):
    """Whenever the disk fills (at the first image or further on): one error, no HDF5 error flood,
    no crash; the partial store is removed and the previous store kept."""
    out = small_disk / "s.h5"
    out.write_bytes(b"the previous store")
    _fill(small_disk, leave_kib)
    done = subprocess.run(
        [sys.executable, "-c", WRITE_STORE, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert done.returncode == 1, done.stderr[-2000:]  # an uncaught UserError, not a segmentation fault (-11)
    assert f"UserError: {out}: no space left on device" in done.stderr
    assert len(done.stderr.splitlines()) < 20, done.stderr[:2000]
    assert out.read_bytes() == b"the previous store"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "s.h5"]


@pytest.mark.slow
def test_extract_maps_on_a_full_disk(data, classifier, small_disk):
    root, _ = data
    out = small_disk / "s.h5"
    out.write_bytes(b"the previous store")
    _fill(small_disk, 8)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "drs",
            "extract-maps",
            "--model",
            str(classifier),
            "--dataset",
            str(root),
            "--split",
            "train",
            "--out",
            str(out),
            "--scales",
            "48",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert _error_lines(done.stderr) == [
        f"drs extract-maps: error: {out}: no space left on device; the partial "
        "output was removed, free some space and run again"
    ]
    assert out.read_bytes() == b"the previous store"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "s.h5"]


def test_checkpoint_on_a_full_disk(small_disk):
    import torch

    from drs.store.model_files import atomic_save

    last = small_disk / "last.pt"
    atomic_save({"epoch": 1}, last)
    before = last.read_bytes()
    with pytest.raises(UserError, match=rf"^{last}: no space left on device"):
        atomic_save({"epoch": 2, "weights": torch.zeros(300_000)}, last)  # 1.2 MB
    assert last.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pseudo_labels_on_a_full_disk(data, small_disk, workers, capsys):
    root, store = data
    out = small_disk / "pl"
    args = ["pseudo-labels", str(store), "--dataset", str(root), "--out", str(out), "--workers", workers]
    assert main(args) == 0
    before = _files(out)
    _fill(small_disk, 4)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == [
        f"drs pseudo-labels: error: {out}: no space left on device; the partial output was "
        "removed, free some space and run again"
    ]
    assert _files(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "pl"]


def test_report_files_on_a_full_disk(small_disk):
    from drs.util.files import atomic_write_text

    summary = small_disk / "summary.md"
    atomic_write_text(summary, "# the previous summary\n")
    with pytest.raises(UserError, match=rf"^{summary}: no space left on device"):
        atomic_write_text(summary, "x" * 2_000_000)
    assert summary.read_text() == "# the previous summary\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["summary.md"]


def test_overlay_picture_on_a_full_disk(data, small_disk, capsys):
    root, store = data
    out = small_disk / "overlay.png"
    out.write_bytes(b"the previous picture")
    _fill(small_disk, 0)
    image_id = VOCDataset(root, "train").ids[0]
    assert main(["inspect", str(store), "--id", image_id, "--out", str(out), "--dataset", str(root)]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"drs inspect: error: {out}: no space left on device; the "
        "partial output was removed, free some space and run again"
    ]
    assert out.read_bytes() == b"the previous picture"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "overlay.png"]


# -- 9, simulated: a write raising ENOSPC (runs where no tmpfs can be mounted) ----------------------
def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_pseudo_labels_simulated_full_disk(data, tmp_path, monkeypatch, capsys):
    import drs.labels.writer

    root, store = data
    out = tmp_path / "pl"
    args = ["pseudo-labels", str(store), "--dataset", str(root), "--out", str(out), "--workers", "1"]
    assert main(args) == 0
    before = _files(out)
    monkeypatch.setattr(drs.labels.writer, "save_label_png", _no_space)
    assert main(args) == 2
    assert f"{out}: no space left on device" in capsys.readouterr().err
    assert _files(out) == before and _leftovers(tmp_path) == []


def test_report_files_simulated_full_disk(tmp_path, monkeypatch):
    from drs.util.files import atomic_write_text

    summary = tmp_path / "summary.md"
    summary.write_text("# the previous summary\n")
    monkeypatch.setattr(Path, "write_bytes", _no_space)
    with pytest.raises(UserError, match="no space left on device"):
        atomic_write_text(summary, "# new\n")
    assert summary.read_text() == "# the previous summary\n" and _leftovers(tmp_path) == []


def test_a_full_disk_is_named_in_one_line():
    from drs.util.files import write_error

    h5py_text = (
        "Can't synchronously write data (file write failed: errno = 28, error message = 'No space left on device')"
    )
    for err in (
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError(h5py_text),
    ):
        message = str(write_error("out/s.h5", err))
        assert message.startswith("out/s.h5: no space left on device") and "\n" not in message
    assert (
        str(write_error("out/s.h5", OSError(errno.EACCES, "Permission denied")))
        == "out/s.h5: cannot write (Permission denied)"
    )
