"""Tests for the HDF5 localization-map store (`drs.maps`) and `drs inspect`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import drs.cli
from drs import __version__
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.store.format import SCHEMA_VERSION, partial_path
from drs.store.inspect import summary
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter

SIZE = 48
NAMES = ["background", "a", "b", "c"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(synth_dataset) -> Path:
    return synth_dataset(SynthSpec(num_train=6, num_val=2, image_size=SIZE, object_size=(20, 30), num_classes=3))


def writer(path: Path, dataset: Path | str = "/nowhere", names=NAMES, **kwargs) -> MapStoreWriter:
    options = dict(class_names=names, scales=[1.0, 0.5], flip=True, stage="cam", split="train", dataset=str(dataset))
    options.update(kwargs)
    return MapStoreWriter(path, **options)


def random_maps(rng: np.random.Generator, classes, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (len(classes), height, width), dtype=np.uint8)


def smooth_maps(rng: np.random.Generator, classes, height: int, width: int) -> np.ndarray:
    """CAM-like maps: one Gaussian blob per class, zero far from it (compressible, as real maps are)."""
    yy, xx = np.mgrid[:height, :width]
    maps = []
    for _ in classes:
        cy, cx, sigma = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 10)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        maps.append(np.where(blob < 0.05, 0.0, blob))
    return np.round(np.array(maps).reshape(len(classes), height, width) * 255).astype(np.uint8)


def store_from_dataset(path: Path, dataset: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A store of random maps for the classes of every train image; returns what was written."""
    data = VOCDataset(dataset, "train")
    rng = np.random.default_rng(seed)
    written = {}
    with writer(path, dataset, names=list(data.class_names), checkpoint_sha256="ab" * 32, config={"lr": 0.001}) as out:
        for image_id in data.ids:
            classes = data.labels(image_id)
            maps = smooth_maps(rng, classes, SIZE, SIZE)
            out.add(image_id, classes, maps)
            written[image_id] = (classes, maps)
    return written


@pytest.fixture
def good_store(tmp_path) -> Path:
    path = tmp_path / "maps" / "small.h5"
    rng = np.random.default_rng(1)
    with writer(path) as out:
        out.add("img1", [1, 3], random_maps(rng, [1, 3], 20, 30))
        out.add("img2", [2], random_maps(rng, [2], 20, 30))
    return path


def open_error(path: Path) -> str:
    with pytest.raises(UserError) as err:
        MapStore(path)
    return str(err.value)


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------
def test_round_trip_uint8(tmp_path):
    path = tmp_path / "m.h5"
    rng = np.random.default_rng(0)
    maps = random_maps(rng, [1, 3], 16, 24)
    with writer(path, config={"x": [1, 2]}, checkpoint_sha256="f" * 64) as out:
        out.add("one", [3, 1], maps[::-1])  # unsorted classes are sorted with their maps
    with MapStore(path) as store:
        record = store.read("one")
        assert record.image_id == "one"
        assert record.classes.dtype == np.int64 and record.classes.tolist() == [1, 3]
        assert record.maps.dtype == np.uint8 and np.array_equal(record.maps, maps)
        assert record.size == (16, 24)
        assert np.allclose(record.float(), maps / 255.0) and record.float().dtype == np.float32
        assert store.class_names == NAMES and store.num_classes == 3
        assert store.scales == [1.0, 0.5] and store.flip is True and store.stage == "cam"
        attrs = store.attrs
        assert attrs["format"] == "drs-map-store" and attrs["schema_version"] == SCHEMA_VERSION
        assert attrs["config"] == {"x": [1, 2]} and attrs["checkpoint_sha256"] == "f" * 64
        assert attrs["package_version"] == __version__ and attrs["num_images"] == 1
        assert attrs["created"].endswith("+00:00") and attrs["split"] == "train"


def test_round_trip_float_and_dense(tmp_path):
    path = tmp_path / "m.h5"
    rng = np.random.default_rng(0)
    maps = rng.uniform(-0.2, 1.2, (2, 10, 12))
    with writer(path) as out:
        out.add("f", [2, 3], maps)
        out.add("g", [1], maps[:1].astype(np.float32))
    expected = np.round(np.clip(maps, 0, 1) * 255).astype(np.uint8)
    with MapStore(path) as store:
        assert np.array_equal(store.read("f").maps, expected)
        dense = store.dense("f")
        assert dense.shape == (3, 10, 12) and dense.dtype == np.float32
        assert not dense[0].any()  # class 1 not stored
        assert np.allclose(dense[1:], expected / 255.0)
        assert 0.0 <= dense.min() and dense.max() <= 1.0


def test_iteration_order_and_random_access(tmp_path, dataset):
    path = tmp_path / "train.h5"
    written = store_from_dataset(path, dataset)
    with MapStore(path) as store:
        assert store.ids == list(written) and len(store) == len(written)
        assert [r.image_id for r in store] == list(written)
        for image_id in reversed(list(written)):  # any order
            classes, maps = written[image_id]
            record = store.read(image_id)
            assert record.classes.tolist() == classes.tolist() and np.array_equal(record.maps, maps)
        assert "train_00003" in store and "val_00000" not in store
    # usable without `with`
    store = MapStore(path)
    assert len(store) == 6
    store.close()


def test_different_sizes_and_empty_image(tmp_path):
    path = tmp_path / "m.h5"
    rng = np.random.default_rng(0)
    sizes = {"wide": (11, 40), "tall": (37, 9), "square": (20, 20)}
    with writer(path) as out:
        for image_id, (h, w) in sizes.items():
            out.add(image_id, [2], random_maps(rng, [2], h, w))
        out.add("none", [], np.zeros((0, 5, 7), dtype=np.uint8))
    with MapStore(path) as store:
        for image_id, size in sizes.items():
            assert store.read(image_id).size == size and store.dense(image_id).shape == (3, *size)
        empty = store.read("none")
        assert empty.maps.shape == (0, 5, 7) and empty.classes.tolist() == [] and not store.dense("none").any()


def test_chunking_and_compression(good_store):
    with h5py.File(good_store, "r") as f:
        dset = f["maps/img1"]
        assert dset.dtype == np.uint8 and dset.shape == (2, 20, 30)
        assert dset.chunks == (1, 20, 30)
        assert f.id.get_create_plist().get_version()[0] == 3  # superblock of the HDF5 1.10 format
        assert dset.compression == "gzip" and dset.compression_opts == 4 and dset.shuffle
        assert dset.attrs["classes"].dtype == np.int16 and dset.attrs["size"].tolist() == [20, 30]
        assert [i.decode() if isinstance(i, bytes) else i for i in f["ids"][()]] == ["img1", "img2"]


# --------------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------------
def test_partial_file_hidden_while_writing(tmp_path):
    path = tmp_path / "m.h5"
    hidden = tmp_path / ".m.h5.partial"
    assert partial_path(path) == hidden
    with writer(path) as out:
        out.add("x", [1], np.zeros((1, 4, 4), dtype=np.uint8))
        assert not path.exists() and hidden.exists()
        assert "not found" in open_error(path)
    assert path.exists() and not hidden.exists()


def test_exception_removes_partial_and_keeps_final_path(tmp_path):
    path = tmp_path / "m.h5"
    with pytest.raises(RuntimeError):
        with writer(path) as out:
            out.add("x", [1], np.zeros((1, 4, 4), dtype=np.uint8))
            raise RuntimeError("extraction crashed")
    assert not path.exists() and not partial_path(path).exists()
    assert "map store not found" in open_error(path)  # a crashed writer leaves nothing to open


def test_exception_leaves_previous_store_untouched(good_store):
    before = good_store.read_bytes()
    with pytest.raises(RuntimeError):
        with writer(good_store) as out:
            out.add("other", [1], np.zeros((1, 4, 4), dtype=np.uint8))
            raise RuntimeError
    assert good_store.read_bytes() == before and not partial_path(good_store).exists()


@pytest.mark.parametrize(
    "image_id, classes, shape, message",
    [
        ("dup", [1], (1, 4, 4), "duplicate id"),
        ("k", [1, 2], (1, 4, 4), "1 maps for 2 classes"),
        ("zero", [0], (1, 4, 4), "out of range 1..3"),
        ("high", [4], (1, 4, 4), "out of range 1..3"),
        ("twice", [2, 2], (2, 4, 4), "duplicate class"),
        ("a/b", [1], (1, 4, 4), "without '/'"),
        ("flat", [1], (4, 4), "(K, H, W)"),
    ],
)
def test_add_rejects_bad_input(tmp_path, image_id, classes, shape, message):
    with writer(tmp_path / "m.h5") as out:
        out.add("dup", [1], np.zeros((1, 4, 4), dtype=np.uint8))
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            out.add(image_id, classes, np.zeros(shape, dtype=np.uint8))
        assert isinstance(err.value, UserError) and repr(image_id) in str(err.value)
        assert len(out) == 1


# --------------------------------------------------------------------------------------------
# Opening errors
# --------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    message = open_error(tmp_path / "absent.h5")
    assert "absent.h5" in message and "not found" in message


def test_text_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5 at all\n")
    message = open_error(path)
    assert "notes.h5" in message and "not a readable HDF5 file (truncated or corrupt?)" in message


def test_truncated_store(tmp_path, good_store):
    path = tmp_path / "cut.h5"
    data = good_store.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = open_error(path)
    assert "cut.h5" in message and "truncated or corrupt" in message


def test_hdf5_without_format(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    message = open_error(path)
    assert "other.h5" in message and "not a drs map store" in message


def test_other_schema_version(tmp_path, good_store):
    with h5py.File(good_store, "a") as f:
        f.attrs["schema_version"] = 99
    message = open_error(good_store)
    assert "version 99" in message and f"reads version {SCHEMA_VERSION}" in message and "re-run" in message


def test_store_without_ids_is_incomplete(tmp_path, good_store):
    with h5py.File(good_store, "a") as f:
        del f["ids"]
    assert "incomplete" in open_error(good_store)


def test_read_unknown_id(good_store):
    with MapStore(good_store) as store, pytest.raises(UserError) as err:
        store.read("nope")
    assert "'nope'" in str(err.value) and "small.h5" in str(err.value)


# --------------------------------------------------------------------------------------------
# Summary and `drs inspect`
# --------------------------------------------------------------------------------------------
def test_summary(tmp_path, dataset):
    path = tmp_path / "train.h5"
    written = store_from_dataset(path, dataset)
    info = summary(path)
    assert info["num_images"] == 6 and info["stage"] == "cam" and info["split"] == "train"
    assert info["schema_version"] == SCHEMA_VERSION and info["class_names"][0] == "background"
    counts = {name: 0 for name in info["class_names"][1:]}
    for classes, _ in written.values():
        for c in classes:
            counts[info["class_names"][c]] += 1
    assert info["images_per_class"] == counts
    assert info["image_height"] == {"min": SIZE, "median": SIZE, "max": SIZE} == info["image_width"]
    assert info["file_bytes"] == path.stat().st_size
    assert info["bytes_per_image"] == pytest.approx(info["file_bytes"] / 6)
    assert info["dense_uint8_bytes_per_image"] == 3 * SIZE * SIZE
    assert info["bytes_per_image"] < info["dense_uint8_bytes_per_image"]
    assert info["ratio_to_dense"] == pytest.approx(info["bytes_per_image"] / info["dense_uint8_bytes_per_image"])
    assert info["checkpoint_sha256"] == "ab" * 32 and info["config"] == {"lr": 0.001}
    assert info["scales"] == [1.0, 0.5] and info["flip"] is True and info["package_version"] == __version__


def test_inspect_text_and_json(tmp_path, dataset, capsys):
    path = tmp_path / "train.h5"
    store_from_dataset(path, dataset)
    assert drs.cli.main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in text.splitlines())
    assert lines["images"] == "6" and lines["stage"] == "cam"
    assert lines["file size"].endswith(("KiB", "MiB", " B"))
    assert "of a dense C x H x W uint8 array" in lines["size vs dense"] and lines["size vs dense"].startswith("1/")
    assert lines["checkpoint sha256"] == "ab" * 32
    assert drs.cli.main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_images"] == 6 and info["ratio_to_dense"] < 1


def test_inspect_overlay(tmp_path, dataset, capsys):
    path = tmp_path / "train.h5"
    written = store_from_dataset(path, dataset)
    image_id = max(written, key=lambda i: len(written[i][0]))
    k = len(written[image_id][0])
    out = tmp_path / "pics" / "overlay.png"
    assert drs.cli.main(["inspect", str(path), "--id", image_id, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as picture:
        assert picture.size == ((2 + k) * SIZE, SIZE) and picture.mode == "RGB"
        pixels = np.asarray(picture)
    original = VOCDataset(dataset, "train").load_image(image_id)
    assert np.array_equal(pixels[:, :SIZE], original)
    # --dataset points elsewhere: moved dataset still found
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    out2 = tmp_path / "overlay2.png"
    assert drs.cli.main(["inspect", str(path), "--id", image_id, "--out", str(out2), "--dataset", str(moved)]) == 0
    assert np.array_equal(np.asarray(Image.open(out2)), pixels)


def test_inspect_unknown_id_and_missing_dataset(tmp_path, dataset, capsys):
    path = tmp_path / "train.h5"
    store_from_dataset(path, dataset)
    out = tmp_path / "o.png"
    assert drs.cli.main(["inspect", str(path), "--id", "no_such_id", "--out", str(out)]) == 2
    assert "no_such_id" in capsys.readouterr().err and not out.exists()
    gone = tmp_path / "gone"
    assert drs.cli.main(["inspect", str(path), "--id", "train_00000", "--out", str(out), "--dataset", str(gone)]) == 2
    err = capsys.readouterr().err
    assert str(gone) in err and "--dataset" in err and not out.exists()
    assert drs.cli.main(["inspect", str(tmp_path / "absent.h5")]) == 2
    assert "absent.h5" in capsys.readouterr().err
