"""The synthetic dataset: deterministic, VOC layout, and shaped like the problem DRS solves."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from drs.cli import main
from drs.data.synth import generate, generate_image
from drs.data.synth_spec import SaliencySpec, SynthSpec
from drs.data.voc import VOCDataset
from drs.errors import UserError

SMALL = SynthSpec(
    num_train=16, num_val=6, image_size=64, num_classes=3, object_size=(24, 40), clutter=3, objects_per_image=(1, 3)
)


def tree_digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "set", SMALL, workers=1)


def test_layout(small_set):
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationPart", "saliency_map", "ImageSets/Segmentation"):
        assert (small_set / sub).is_dir(), sub
    train = (small_set / "ImageSets/Segmentation/train.txt").read_text().split()
    val = (small_set / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(train) == 16 and len(val) == 6 and not set(train) & set(val)
    for image_id in train + val:
        assert (small_set / "JPEGImages" / f"{image_id}.jpg").exists()
        assert Image.open(small_set / "SegmentationClass" / f"{image_id}.png").mode == "P"
        assert Image.open(small_set / "saliency_map" / f"{image_id}.png").mode == "L"
    names = (small_set / "class_names.txt").read_text().split()
    assert names[0] == "background" and len(names) == 4 and len(set(names)) == 4
    meta = json.loads((small_set / "synthetic.json").read_text())
    assert meta["spec"]["num_train"] == 16
    assert not list(small_set.parent.glob(".*partial"))


def test_same_seed_same_bytes_in_parallel(small_set, tmp_path):
    again = generate(tmp_path / "again", SMALL, workers=2)
    assert tree_digest(again) == tree_digest(small_set)


def test_other_seed_differs(small_set, tmp_path):
    other = generate(tmp_path / "other", SynthSpec(**{**SMALL.__dict__, "seed": 7}), workers=1)
    a, b = tree_digest(small_set), tree_digest(other)
    assert a.keys() == b.keys()
    assert a["JPEGImages/train_00000.jpg"] != b["JPEGImages/train_00000.jpg"]


def test_labels_parts_and_saliency(small_set):
    ds = VOCDataset(small_set, "train")
    multi_label = 0
    sal_on, sal_off = [], []
    for image_id in ds.ids:
        mask, part = ds.load_mask(image_id), ds.load_part_mask(image_id)
        labels = ds.labels(image_id)
        assert labels.size >= 1 and labels.max() <= 3
        multi_label += labels.size > 1
        assert 255 in mask  # VOC-style void band on outlines
        # every part pixel lies on an object of the same class (or its void outline)
        on_part = part > 0
        assert on_part.any()
        assert np.all((mask[on_part] == part[on_part]) | (mask[on_part] == 255))
        assert set(np.unique(part[on_part])) <= set(labels.tolist())
        # parts are small: most of each object is the rest of its body
        objects = (mask > 0) & (mask != 255)
        assert on_part.sum() < 0.6 * objects.sum()
        # saliency imitates a detector: soft, correlated with objects, but not the ground truth
        sal = ds.load_saliency(image_id)
        sal_on.append(sal[objects].mean())
        sal_off.append(sal[~objects & (mask != 255)].mean())
        assert sal_on[-1] > sal_off[-1]
        assert not np.array_equal(sal > 0.5, objects)
    assert np.mean(sal_on) > np.mean(sal_off) + 0.5
    assert multi_label >= 3  # several objects and classes per image occur


def test_saliency_imperfections_follow_settings():
    perfect = SynthSpec(
        **{
            **SMALL.__dict__,
            "clutter": 3,
            "saliency": SaliencySpec(blur_sigma=0, miss_rate=0, false_alarm_rate=0, boundary_jitter=0),
        }
    )
    noisy = SynthSpec(
        **{
            **SMALL.__dict__,
            "saliency": SaliencySpec(blur_sigma=2, miss_rate=1.0, false_alarm_rate=1.0, boundary_jitter=2),
        }
    )
    p, n = generate_image(perfect, 0, 3), generate_image(noisy, 0, 3)
    objects = p["mask"] > 0
    assert np.array_equal(p["saliency"] == 255, objects)  # no imperfection: exactly the objects
    assert set(np.unique(p["saliency"])) <= {0, 255}
    disagree = ((n["saliency"] > 127) != (n["mask"] > 0)).mean()
    assert disagree > 0.02
    assert 0 < ((n["saliency"] > 0) & (n["saliency"] < 255)).mean()  # soft edges


def test_part_carries_the_class_body_only_weakly():
    """Part pixels differ strongly between classes; body colours overlap across classes."""
    spec = SynthSpec(
        num_train=1, num_val=1, image_size=96, num_classes=2, objects_per_image=(1, 1), object_size=(50, 60), clutter=0
    )
    part_means = {1: [], 2: []}
    body_means = {1: [], 2: []}
    for i in range(40):
        s = generate_image(spec, 0, i)
        cls = int(np.unique(s["mask"][(s["mask"] > 0) & (s["mask"] != 255)])[0])
        body = (s["mask"] == cls) & (s["part"] == 0)
        part_means[cls].append(s["image"][s["part"] > 0].mean(0))
        body_means[cls].append(s["image"][body].mean(0))

    def separation(groups):
        a, b = (np.array(groups[c]) for c in (1, 2))
        spread = np.sqrt((a.var(0) + b.var(0)).sum() / 2)
        return np.linalg.norm(a.mean(0) - b.mean(0)) / spread

    assert separation(part_means) > 3 * separation(body_means)
    assert separation(body_means) > 0.1  # the body is still weakly class-specific


def test_spec_errors():
    with pytest.raises(UserError, match="config key 'synthetic': unknown key"):
        SynthSpec.from_dict({"sizes": 3})
    with pytest.raises(UserError, match="object_size"):
        SynthSpec.from_dict({"image_size": 64, "object_size": [40, 80]})


def test_cli_and_refuses_existing(tmp_path):
    out = tmp_path / "cli"
    spec = json.dumps({"num_classes": 2, "image_size": 48, "object_size": [20, 30]})
    assert main(["synth", str(out), "--spec", spec, "--num-train", "4", "--num-val", "2", "--workers", "1"]) == 0
    assert len((out / "ImageSets/Segmentation/train.txt").read_text().split()) == 4
    assert main(["synth", str(out), "--num-train", "4"]) == 2  # exists: refused, kept
    assert main(["synth", str(tmp_path / "x"), "--spec", "{not json"]) == 2


def test_image_size_256_supported(tmp_path):
    spec = SynthSpec(num_train=2, num_val=1, image_size=256, object_size=(80, 160), part_size=0.2)
    out = generate(tmp_path / "big", spec, workers=1)
    with Image.open(out / "JPEGImages/train_00000.jpg") as image:
        assert image.size == (256, 256)


PINNED = SynthSpec(
    seed=11,
    num_train=3,
    num_val=1,
    image_size=64,
    num_classes=3,
    object_size=(24, 40),
    clutter=3,
    objects_per_image=(1, 3),
    saliency=SaliencySpec(miss_rate=0.5, false_alarm_rate=0.5),
)
# SHA-256 over every file's name and bytes (synthetic.json aside: it records the package version),
# computed with the generator as first written (per-pixel scipy zoom). Any change to what the
# generator draws or writes fails here; so would a Pillow/libjpeg upgrade that re-encodes JPEGs.
PINNED_DIGEST = "f6cc6e34c50eee5ff4bb39e67b7c524b251658413f5e037e01cd75f95fd3daba"


def test_output_pinned_for_a_fixed_seed(tmp_path):
    root = generate(tmp_path / "pinned", PINNED, workers=1)
    digest = hashlib.sha256()
    for name, file_hash in tree_digest(root).items():
        if name != "synthetic.json":
            digest.update(f"{name}\0{file_hash}\n".encode())
    assert digest.hexdigest() == PINNED_DIGEST


@pytest.mark.parametrize("shape", [(448, 448), (64, 64), (100, 37), (5, 5)])
def test_upscale_cubic_is_skimage_resize_bit_for_bit(shape):
    from skimage import transform

    from drs.data.spline_zoom import upscale_cubic

    grid = np.random.default_rng(shape[0]).uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    want = transform.resize(grid, (*shape, 3), order=3, mode="reflect", anti_aliasing=False)
    got = upscale_cubic(grid, shape)
    assert got.dtype == want.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("shape", [(448, 448), (64, 64), (100, 37), (6, 6)])
def test_upscale_linear_is_skimage_resize_bit_for_bit(shape):
    from skimage import transform

    from drs.data.spline_zoom import upscale_linear

    grid = np.random.default_rng(shape[1]).normal(1.0, 0.12, (6, 6))
    want = transform.resize(grid, shape, order=1, mode="reflect")
    got = upscale_linear(grid, shape)
    assert got.dtype == want.dtype == np.float64
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


def test_outline_jitter_on_the_bounding_box_is_the_whole_image_result():
    from skimage import morphology

    from drs.data.synth import _jitter_outline, _random_shape

    for seed in range(40):
        rng = np.random.default_rng(seed)
        mask = _random_shape(rng, 48, (0.05, 1.2))  # some shapes run off the image edges
        for jitter in (-2, -1, 1, 2):
            disk = morphology.disk(abs(jitter))
            want = morphology.dilation(mask, disk) if jitter > 0 else morphology.erosion(mask, disk)
            assert np.array_equal(_jitter_outline(mask, jitter), want), (seed, jitter)


def test_saliency_blur_on_the_bounding_box_is_the_whole_image_result():
    from skimage import filters

    from drs.data.synth import _blur_nonzero, _random_shape

    for seed in range(20):
        rng = np.random.default_rng(seed)
        sal = _random_shape(rng, 64, (0.05, 0.9)).astype(np.float32) * np.float32(rng.uniform(0.5, 1.0))
        for sigma in (0.7, 2.0):
            want = filters.gaussian(sal, sigma=sigma, preserve_range=True)
            got = _blur_nonzero(sal, sigma)
            assert got.dtype == want.dtype and np.array_equal(got, want), (seed, sigma)
