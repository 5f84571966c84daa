"""Tests for the PASCAL VOC layout reader (`drs.data.voc`) on tiny folders built under tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drs.data.voc import (
    VOC_CLASSES,
    VOCDataset,
    read_class_names,
    read_label_png,
    read_split,
    save_label_png,
    voc_palette,
)
from drs.errors import UserError

SPLITS = Path("ImageSets") / "Segmentation"


# --------------------------------------------------------------------------------------------
# Helpers: a tiny folder in VOC layout
# --------------------------------------------------------------------------------------------
def write_jpeg(root: Path, image_id: str, height: int, width: int, seed: int = 0) -> Path:
    """A real (noisy) RGB JPEG of the given size."""
    rng = np.random.default_rng(seed)
    path = root / "JPEGImages" / f"{image_id}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def write_palette_mask(root: Path, image_id: str, mask: np.ndarray, folder: str = "SegmentationClass") -> Path:
    """A palette (P) mask, the way VOC's SegmentationClass ships them."""
    path = root / folder / f"{image_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_label_png(path, mask)
    return path


def write_grey_mask(root: Path, image_id: str, mask: np.ndarray, folder: str = "SegmentationClassAug") -> Path:
    """A grey (L) mask, the way SBD's SegmentationClassAug ships them."""
    path = root / folder / f"{image_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, dtype=np.uint8)).convert("L").save(path)
    return path


def write_split(root: Path, split: str, ids: list[str]) -> Path:
    path = root / SPLITS / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def bordered_mask(height: int, width: int, regions: dict[int, tuple[slice, slice]], border: int = 3) -> np.ndarray:
    """Background with rectangles of the given classes and a 255 (void) ring around each."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for cls, (rows, cols) in regions.items():
        r0, r1 = rows.start, rows.stop
        c0, c1 = cols.start, cols.stop
        mask[max(r0 - border, 0) : r1 + border, max(c0 - border, 0) : c1 + border] = 255
        mask[r0:r1, c0:c1] = cls
    return mask


def make_sample(root: Path, image_id: str, mask: np.ndarray, *, grey: bool = False, seed: int = 0) -> None:
    """JPEG plus mask of the mask's size (palette into SegmentationClass, or grey into the Aug folder)."""
    write_jpeg(root, image_id, *mask.shape, seed=seed)
    if grey:
        write_grey_mask(root, image_id, mask)
    else:
        write_palette_mask(root, image_id, mask)


# --------------------------------------------------------------------------------------------
# Images, masks and labels
# --------------------------------------------------------------------------------------------
def test_odd_sizes_void_borders_labels_and_multi_hot(tmp_path):
    landscape = bordered_mask(333, 500, {3: (slice(40, 200), slice(60, 300))})
    portrait = bordered_mask(281, 187, {8: (slice(10, 100), slice(20, 90)), 12: (slice(150, 260), slice(100, 170))})
    assert 255 in landscape and 255 in portrait
    make_sample(tmp_path, "2007_000001", landscape, seed=1)
    make_sample(tmp_path, "2007_000002", portrait, seed=2)
    write_split(tmp_path, "train", ["2007_000001", "2007_000002"])

    ds = VOCDataset(tmp_path, "train")
    assert len(ds) == 2 and ds.ids == ["2007_000001", "2007_000002"]
    assert ds.num_classes == 20 and ds.mask_dir == "SegmentationClass"
    for image_id, expected in (("2007_000001", landscape), ("2007_000002", portrait)):
        image = ds.load_image(image_id)
        mask = ds.load_mask(image_id)
        assert image.dtype == np.uint8 and image.shape == (*expected.shape, 3)
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        np.testing.assert_array_equal(mask, expected)

    np.testing.assert_array_equal(ds.labels("2007_000001"), [3])
    np.testing.assert_array_equal(ds.labels("2007_000002"), [8, 12])
    hot = ds.multi_hot("2007_000002")
    assert hot.dtype == np.float32 and hot.shape == (20,)
    assert np.flatnonzero(hot).tolist() == [7, 11]
    assert ds.multi_hot("2007_000001").sum() == 1.0


def test_background_only_mask_has_no_labels(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[:2] = 255
    make_sample(tmp_path, "empty", mask)
    write_split(tmp_path, "train", ["empty"])
    ds = VOCDataset(tmp_path, "train")
    assert ds.labels("empty").size == 0
    assert not ds.multi_hot("empty").any()


def test_prefers_segmentation_class_aug_and_mask_dir_overrides(tmp_path):
    shape = (41, 57)
    palette_mask = bordered_mask(*shape, {5: (slice(5, 20), slice(5, 30))})
    grey_mask = bordered_mask(*shape, {7: (slice(10, 35), slice(20, 50))})
    write_jpeg(tmp_path, "a", *shape)
    p_path = write_palette_mask(tmp_path, "a", palette_mask)
    l_path = write_grey_mask(tmp_path, "a", grey_mask)
    write_split(tmp_path, "train", ["a"])
    with Image.open(p_path) as im_p, Image.open(l_path) as im_l:
        assert (im_p.mode, im_l.mode) == ("P", "L")

    ds = VOCDataset(tmp_path, "train")
    assert ds.mask_dir == "SegmentationClassAug"
    assert ds.mask_path("a") == l_path
    np.testing.assert_array_equal(ds.load_mask("a"), grey_mask)
    np.testing.assert_array_equal(ds.labels("a"), [7])

    override = VOCDataset(tmp_path, "train", mask_dir="SegmentationClass")
    assert override.mask_path("a") == p_path
    np.testing.assert_array_equal(override.load_mask("a"), palette_mask)
    np.testing.assert_array_equal(override.labels("a"), [5])


def test_segmentation_class_used_when_aug_absent(tmp_path):
    mask = bordered_mask(30, 40, {2: (slice(5, 15), slice(5, 15))})
    make_sample(tmp_path, "a", mask)
    write_split(tmp_path, "train", ["a"])
    ds = VOCDataset(tmp_path, "train")
    assert ds.mask_dir == "SegmentationClass"
    np.testing.assert_array_equal(ds.labels("a"), [2])


def test_rgb_mask_is_rejected_naming_the_file(tmp_path):
    write_jpeg(tmp_path, "rgb", 20, 30)
    path = tmp_path / "SegmentationClass" / "rgb.png"
    path.parent.mkdir(parents=True)
    Image.new("RGB", (30, 20), (128, 0, 0)).save(path)
    write_split(tmp_path, "train", ["rgb"])
    ds = VOCDataset(tmp_path, "train")
    with pytest.raises(UserError, match=r"rgb\.png.*mode RGB"):
        ds.load_mask("rgb")
    with pytest.raises(UserError, match=r"rgb\.png"):
        ds.labels("rgb")
    with pytest.raises(UserError, match=r"rgb\.png"):
        read_label_png(path)


def test_label_value_out_of_range_names_file_and_value(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:10, 5:10] = 30
    mask[12:15, 12:15] = 4
    mask[0] = 255
    make_sample(tmp_path, "bad", mask)
    write_split(tmp_path, "train", ["bad"])
    ds = VOCDataset(tmp_path, "train")
    with pytest.raises(UserError) as info:
        ds.labels("bad")
    message = str(info.value)
    assert str(ds.mask_path("bad")) in message
    assert "[30]" in message  # only the bad value is listed, not 4 or 255
    with pytest.raises(UserError, match=r"bad\.png.*30"):
        ds.multi_hot("bad")


# --------------------------------------------------------------------------------------------
# <split>_labels.txt
# --------------------------------------------------------------------------------------------
def test_split_without_masks_takes_labels_from_labels_file(tmp_path):
    write_jpeg(tmp_path, "t1", 33, 21)
    write_jpeg(tmp_path, "t2", 21, 33)
    write_split(tmp_path, "test", ["t1", "t2"])
    (tmp_path / SPLITS / "test_labels.txt").write_text("t1 cat dog\n\nt2 person person\n")
    # a mask folder exists (for other splits) but holds nothing for these ids
    write_palette_mask(tmp_path, "other", np.zeros((4, 4), dtype=np.uint8))

    ds = VOCDataset(tmp_path, "test")
    np.testing.assert_array_equal(ds.labels("t1"), [VOC_CLASSES.index("cat"), VOC_CLASSES.index("dog")])
    np.testing.assert_array_equal(ds.labels("t2"), [VOC_CLASSES.index("person")])
    assert np.flatnonzero(ds.multi_hot("t1")).tolist() == [7, 11]
    assert ds.load_image("t1").shape == (33, 21, 3)


def test_labels_file_without_any_mask_folder(tmp_path):
    write_jpeg(tmp_path, "t1", 10, 10)
    write_split(tmp_path, "test", ["t1", "t2"])
    (tmp_path / SPLITS / "test_labels.txt").write_text("t1 aeroplane tvmonitor\n")
    ds = VOCDataset(tmp_path, "test")
    np.testing.assert_array_equal(ds.labels("t1"), [1, 20])
    with pytest.raises(UserError, match=r"t2.*test_labels\.txt"):
        ds.labels("t2")  # neither a mask nor a line


def test_labels_file_unknown_class_names_file_and_line(tmp_path):
    write_jpeg(tmp_path, "t1", 10, 10)
    write_split(tmp_path, "test", ["t1", "t2"])
    labels = tmp_path / SPLITS / "test_labels.txt"
    labels.write_text("t1 cat\nt2 dog unicorn\n")
    ds = VOCDataset(tmp_path, "test")
    with pytest.raises(UserError) as info:
        ds.labels("t1")
    assert f"{labels}:2" in str(info.value) and "unicorn" in str(info.value)


# --------------------------------------------------------------------------------------------
# class_names.txt, split lists, missing files, saliency
# --------------------------------------------------------------------------------------------
def test_class_names_file_sets_names_and_num_classes(tmp_path):
    (tmp_path / "class_names.txt").write_text("background\ncircle\n\nsquare\n")
    mask = bordered_mask(16, 24, {2: (slice(4, 10), slice(4, 10))})
    make_sample(tmp_path, "s", mask)
    write_split(tmp_path, "train", ["s"])
    ds = VOCDataset(tmp_path, "train")
    assert ds.class_names == ("background", "circle", "square")
    assert ds.num_classes == 2
    np.testing.assert_array_equal(ds.multi_hot("s"), [0.0, 1.0])

    # a value valid for VOC is out of range for a 2-class set
    make_sample(tmp_path, "v", bordered_mask(16, 24, {3: (slice(4, 10), slice(4, 10))}))
    with pytest.raises(UserError, match=r"v\.png.*\[3\]"):
        ds.labels("v")


def test_class_names_default_to_voc(tmp_path):
    assert read_class_names(tmp_path) == VOC_CLASSES
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
    write_jpeg(tmp_path, "a", 8, 8)
    write_split(tmp_path, "train", ["a"])
    ds = VOCDataset(tmp_path, "train")
    assert ds.class_names == VOC_CLASSES and ds.num_classes == 20


def test_bad_class_names_file(tmp_path):
    path = tmp_path / "class_names.txt"
    path.write_text("background\n")
    with pytest.raises(UserError, match="class_names.txt"):
        read_class_names(tmp_path)
    path.write_text("background\ncat\ncat\n")
    with pytest.raises(UserError, match="class_names.txt.*unique"):
        read_class_names(tmp_path)


def test_missing_split_list_names_path(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    expected = tmp_path / SPLITS / "val.txt"
    with pytest.raises(UserError) as info:
        VOCDataset(tmp_path, "val")
    assert str(expected) in str(info.value)
    with pytest.raises(UserError, match=r"val\.txt"):
        read_split(tmp_path, "val")


def test_empty_split_list_and_missing_root(tmp_path):
    write_split(tmp_path, "train", [])
    with pytest.raises(UserError, match=r"train\.txt.*empty"):
        read_split(tmp_path, "train")
    with pytest.raises(UserError, match="nowhere"):
        VOCDataset(tmp_path / "nowhere", "train")


def test_read_split_skips_blank_lines_and_rejects_a_second_field(tmp_path):
    path = write_split(tmp_path, "train", [])
    path.write_text("a\n\n  \n b \nc\n")
    assert read_split(tmp_path, "train") == ["a", "b", "c"]
    path.write_text("a\n\nb 1\nc\n")  # one id per line: "b 1" is no id (it used to read as "b")
    with pytest.raises(UserError, match=r"train\.txt:3: id 'b 1' contains whitespace"):
        read_split(tmp_path, "train")


def test_missing_image_names_path(tmp_path):
    write_split(tmp_path, "train", ["ghost"])
    ds = VOCDataset(tmp_path, "train")
    with pytest.raises(UserError) as info:
        ds.load_image("ghost")
    assert str(tmp_path / "JPEGImages" / "ghost.jpg") in str(info.value)


def test_undecodable_image_names_path(tmp_path):
    path = tmp_path / "JPEGImages" / "junk.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a jpeg" * 10)
    write_split(tmp_path, "train", ["junk"])
    with pytest.raises(UserError, match=r"junk\.jpg.*decode"):
        VOCDataset(tmp_path, "train").load_image("junk")


def test_missing_mask_names_path(tmp_path):
    write_jpeg(tmp_path, "a", 8, 8)
    (tmp_path / "SegmentationClass").mkdir()
    write_split(tmp_path, "train", ["a"])
    ds = VOCDataset(tmp_path, "train")
    with pytest.raises(UserError, match=r"SegmentationClass[/\\]a\.png"):
        ds.labels("a")


def test_load_saliency_is_float32_in_unit_range(tmp_path):
    write_jpeg(tmp_path, "a", 17, 29)
    write_split(tmp_path, "train", ["a"])
    saliency = np.tile(np.linspace(0, 255, 29).astype(np.uint8), (17, 1))
    path = tmp_path / "saliency_map" / "a.png"
    path.parent.mkdir()
    Image.fromarray(saliency).save(path)

    ds = VOCDataset(tmp_path, "train")
    assert ds.has_saliency
    sal = ds.load_saliency("a")
    assert sal.dtype == np.float32 and sal.shape == (17, 29)
    assert sal.min() == 0.0 and sal.max() == 1.0
    assert np.all((sal >= 0) & (sal <= 1))
    np.testing.assert_allclose(sal, saliency / 255.0, atol=1e-6)

    write_split(tmp_path, "val", ["b"])
    with pytest.raises(UserError, match=r"saliency_map[/\\]b\.png"):
        VOCDataset(tmp_path, "val").load_saliency("b")


# --------------------------------------------------------------------------------------------
# Label PNGs
# --------------------------------------------------------------------------------------------
def test_label_png_round_trip_is_voc_palette(tmp_path):
    label = np.zeros((13, 17), dtype=np.uint8)
    label[0, :] = 255
    label[3:6, 2:9] = 1
    label[7:12, 10:16] = 15
    label[12, 0] = 20
    path = tmp_path / "label.png"
    save_label_png(path, label)

    back = read_label_png(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, label)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "P"
        palette = image.getpalette()
    assert tuple(palette[0:3]) == (0, 0, 0)
    assert tuple(palette[3:6]) == (128, 0, 0)
    assert tuple(palette[15 * 3 : 15 * 3 + 3]) == (192, 128, 128)
    assert palette[: 21 * 3] == voc_palette()[: 21 * 3]
    # shown as colours, the pixels take the VOC colour map
    with Image.open(path) as image:
        rgb = np.array(image.convert("RGB"))
    assert tuple(rgb[4, 4]) == (128, 0, 0) and tuple(rgb[8, 12]) == (192, 128, 128)


def test_voc_palette_known_colours():
    palette = voc_palette()
    assert len(palette) == 256 * 3
    colour = lambda i: tuple(palette[3 * i : 3 * i + 3])  # noqa: E731
    assert colour(0) == (0, 0, 0)
    assert colour(1) == (128, 0, 0)
    assert colour(2) == (0, 128, 0)
    assert colour(12) == (64, 0, 128)
    assert colour(15) == (192, 128, 128)
    assert colour(255) == (224, 224, 192)


def test_read_label_png_accepts_grey(tmp_path):
    label = np.array([[0, 3, 255], [20, 1, 0]], dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(label).save(path)
    np.testing.assert_array_equal(read_label_png(path), label)
