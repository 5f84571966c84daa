"""Extraction's parallel pipeline (loader workers, deflate threads, direct chunk writes) changes the
pace, never the store: the same ids, the same map arrays bit for bit, the same attributes (but the
creation time), against the in-process path and against the original per-image loop."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drs.config.settings import ClassifierSettings, MapsSettings
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.transforms import to_normalized_tensor
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.inference.maps import combine, extract_maps
from drs.store.model_files import load_classifier
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from drs.training.classifier import train_classifier

SETTINGS = dict(
    width=0.125,
    batch_norm=True,
    stages=3,
    pretrained="none",
    epochs=1,
    batch_size=4,
    lr=0.01,
    input_size=48,
    crop_size=40,
)
SCALES, FLIP, BATCH = [40, 56], True, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # non-square images: the resize and the upsampling back must keep H and W apart
    spec = SynthSpec(num_train=10, num_val=1, image_size=48, num_classes=3, object_size=(20, 32), clutter=2)
    root = generate(tmp_path_factory.mktemp("data") / "synthetic", spec, workers=1)
    from PIL import Image

    for path in (root / "JPEGImages").glob("*.jpg"):
        with Image.open(path) as image:
            image.crop((0, 0, 48, 40)).save(path, quality=92)
    for folder in ("SegmentationClass", "saliency_map"):
        for path in (root / folder).glob("*.png"):
            with Image.open(path) as image:
                image.crop((0, 0, 48, 40)).save(path)
    return root


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "classifier"
    return train_classifier(dataset, "train", out, ClassifierSettings.from_dict(SETTINGS), "learnable")


def _content(path):
    """Everything a reader sees in a store, but its creation time."""
    with h5py.File(path, "r") as f:
        attrs = {k: v for k, v in f.attrs.items() if k != "created"}
        ids = [i.decode() for i in f["ids"][()]]
        maps = {}
        for image_id, dset in f["maps"].items():
            maps[image_id] = (
                dset[()],
                dict(dset.attrs),
                dset.compression,
                dset.compression_opts,
                dset.shuffle,
                dset.chunks,
            )
    return attrs, ids, maps


def _assert_same(a, b):
    attrs_a, ids_a, maps_a = _content(a)
    attrs_b, ids_b, maps_b = _content(b)
    assert attrs_a.keys() == attrs_b.keys()
    for key in attrs_a:
        assert np.array_equal(attrs_a[key], attrs_b[key]), key
    assert ids_a == ids_b and maps_a.keys() == maps_b.keys()
    for image_id, (data, attrs, *layout) in maps_a.items():
        other, other_attrs, *other_layout = maps_b[image_id]
        assert data.dtype == other.dtype == np.uint8 and np.array_equal(data, other), image_id
        assert layout == other_layout, image_id
        assert attrs.keys() == other_attrs.keys() and all(np.array_equal(attrs[k], other_attrs[k]) for k in attrs)


def test_workers_and_deflate_threads_leave_the_store_unchanged(dataset, checkpoint, tmp_path):
    serial = extract_maps(
        checkpoint,
        dataset,
        "train",
        tmp_path / "serial.h5",
        MapsSettings(scales=SCALES, flip=FLIP, batch_size=BATCH),
        workers=0,
    )
    parallel = extract_maps(
        checkpoint,
        dataset,
        "train",
        tmp_path / "parallel.h5",
        MapsSettings(scales=SCALES, flip=FLIP, batch_size=BATCH),
        workers=2,
    )
    _assert_same(serial, parallel)
    with MapStore(parallel) as store:
        assert len(store) == 10 and store.read(store.ids[0]).maps.shape[1:] == (40, 48)


@pytest.fixture
def two_torch_threads():
    """This process at 2 torch threads, as a workflow job of 2 threads (the tests run at 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_workers_resize_as_the_process_does_at_its_thread_count(synth_dataset, tmp_path, two_torch_threads):
    """CPU bilinear resizing gives other last bits on one thread than on several (on images large
    enough to be split between threads: the default set's 128 px): loader workers (one thread by
    PyTorch's default) must use the main process's count, or the store changes."""
    root = synth_dataset(
        SynthSpec(num_train=6, num_val=1, image_size=128, num_classes=2, object_size=(40, 64), clutter=2)
    )
    settings = dict(SETTINGS, input_size=128, crop_size=112)
    model = train_classifier(
        root, "train", tmp_path / "classifier", ClassifierSettings.from_dict(settings), "learnable"
    )
    serial = extract_maps(
        model, root, "train", tmp_path / "serial.h5", MapsSettings(scales=[96, 160], flip=True, batch_size=3), workers=0
    )
    parallel = extract_maps(
        model,
        root,
        "train",
        tmp_path / "parallel.h5",
        MapsSettings(scales=[96, 160], flip=True, batch_size=3),
        workers=2,
    )
    _assert_same(serial, parallel)


def test_maps_match_the_original_per_image_loop(dataset, checkpoint, tmp_path):
    """The loop extraction had before loader workers: decode, normalise and resize in this process,
    forward, combine, uint8; stored through HDF5's own filter pipeline."""
    model, _ = load_classifier(checkpoint)
    voc = VOCDataset(dataset, "train")
    expected = {}
    for start in range(0, len(voc.ids), BATCH):
        chunk = voc.ids[start : start + BATCH]
        images = [voc.load_image(i) for i in chunk]
        tensors = [to_normalized_tensor(im) for im in images]
        with torch.inference_mode():
            outputs = []
            for s in SCALES:  # the original forward_scales, written out
                batch = torch.stack(
                    [F.interpolate(t[None], size=(s, s), mode="bilinear", align_corners=False)[0] for t in tensors]
                )
                outputs += [model.class_maps(batch).float(), model.class_maps(batch.flip(-1)).float().flip(-1)]
            raws = [[out[i] for out in outputs] for i in range(len(chunk))]
            for image_id, image, raw in zip(chunk, images, raws):
                maps = combine(raw, voc.labels(image_id), image.shape[:2]).clamp_(0, 1)
                expected[image_id] = (maps * 255).round_().to(torch.uint8).numpy()
    store = extract_maps(
        checkpoint,
        dataset,
        "train",
        tmp_path / "maps.h5",
        MapsSettings(scales=SCALES, flip=FLIP, batch_size=BATCH),
        workers=2,
    )
    with MapStore(store) as s:
        assert s.ids == voc.ids
        for record in s:
            assert np.array_equal(record.maps, expected[record.image_id]), record.image_id


def test_direct_chunk_writes_store_what_the_filter_pipeline_stores(tmp_path):
    """Chunk by chunk the same compressed bytes, and a file h5py reads through its filters."""
    rng = np.random.default_rng(0)
    options = dict(
        class_names=["background", "a", "b", "c"], scales=[32], flip=False, stage="cam", split="train", dataset="d"
    )
    images = []
    for n in range(12):
        classes = rng.choice([1, 2, 3], size=n % 4, replace=False)
        smooth = np.cumsum(rng.normal(size=(len(classes), 30, 50)), axis=2)
        images.append((f"im{n}", classes, np.clip(smooth * 20 + 128, 0, 255).astype(np.uint8)))
    for workers in (0, 3):
        with MapStoreWriter(tmp_path / f"w{workers}.h5", compress_workers=workers, **options) as writer:
            for image in images:
                writer.add(*image)
    _assert_same(tmp_path / "w0.h5", tmp_path / "w3.h5")
    with h5py.File(tmp_path / "w0.h5", "r") as a, h5py.File(tmp_path / "w3.h5", "r") as b:
        for image_id, dset in a["maps"].items():
            for k in range(dset.shape[0]):
                assert dset.id.read_direct_chunk((k, 0, 0)) == b["maps"][image_id].id.read_direct_chunk((k, 0, 0))
    with MapStore(tmp_path / "w3.h5") as store:
        for image_id, classes, maps in images:
            record = store.read(image_id)
            assert record.classes.tolist() == sorted(classes.tolist())
            assert np.array_equal(record.maps, maps[np.argsort(classes)])


def test_unreadable_image_is_named_through_loader_workers(dataset, checkpoint, tmp_path):
    voc = VOCDataset(dataset, "train")
    broken = dataset / "JPEGImages" / f"{voc.ids[4]}.jpg"
    saved = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    try:
        with pytest.raises(UserError, match=rf"^{broken}: cannot decode image"):
            extract_maps(
                checkpoint,
                dataset,
                "train",
                tmp_path / "maps.h5",
                MapsSettings(scales=SCALES, flip=FLIP, batch_size=BATCH),
                workers=2,
            )
    finally:
        broken.write_bytes(saved)
    assert not (tmp_path / "maps.h5").exists()


def test_images_are_resized_on_the_device_not_before(monkeypatch):
    """On a GPU the resize to each scale must run there (off the CPU): forward_scales moves each
    decoded image to the device before resizing it. The 'meta' device stands in for a GPU."""
    import drs.inference.maps as extract

    seen = []

    def recording_resize(tensor, scales):
        seen.append(tensor.device.type)
        return [torch.zeros(3, s, s, device=tensor.device) for s in scales]

    monkeypatch.setattr(extract, "resize_to_scales", recording_resize)
    monkeypatch.setattr(
        extract, "forward_resized", lambda model, batches, flip, device: [b.device.type for b in batches]
    )
    out = extract.forward_scales(
        None, [torch.zeros(3, 20, 30), torch.zeros(3, 25, 18)], [16, 24], True, torch.device("meta")
    )
    assert seen == ["meta", "meta"]
    assert out == ["meta", "meta"]


def test_bench_maps_with_a_model_runs_the_real_extraction(dataset, checkpoint, tmp_path):
    """`drs bench maps --model`: the extraction through drs.inference.maps.extract_maps with the
    given scales, flip and batch size, against the bare forward pass."""
    from drs.bench.maps import bench_maps

    result = bench_maps(checkpoint, dataset, "train", scales=SCALES, flip=FLIP, images=4, batch_size=BATCH, repeats=1)
    assert result["images"] == 4 and result["scales"] == SCALES and result["flip"] is FLIP
    assert result["batch_size"] == BATCH and result["extract_images_per_s"] > 0 and result["store_bytes_per_image"] > 0
    json.dumps(result)  # what --out writes
