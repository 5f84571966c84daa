"""Tests for `drs check-dataset` (`drs.data.check`) on small VOC-layout folders with planted defects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import drs.cli
from drs.data.check import check_dataset
from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from drs.data.voc import save_label_png

SPLITS = Path("ImageSets") / "Segmentation"
# (height, width) per id: odd sizes, both orientations
TRAIN = {"2007_000032": (37, 53), "2007_000039": (41, 29), "2007_000063": (30, 30), "2007_000068": (23, 47)}
VAL = {"2007_000121": (45, 33), "2007_000123": (31, 50)}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def image_path(root: Path, image_id: str) -> Path:
    return root / "JPEGImages" / f"{image_id}.jpg"


def mask_path(root: Path, image_id: str, folder: str = "SegmentationClass") -> Path:
    return root / folder / f"{image_id}.png"


def saliency_path(root: Path, image_id: str) -> Path:
    return root / "saliency_map" / f"{image_id}.png"


def split_path(root: Path, split: str) -> Path:
    return root / SPLITS / f"{split}.txt"


def write_jpeg(path: Path, height: int, width: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)


def make_mask(height: int, width: int, cls: int = 1) -> np.ndarray:
    """Background, one object of class ``cls`` and a 255 (void) ring around it."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 - 1 : 3 * height // 4 + 1, width // 4 - 1 : 3 * width // 4 + 1] = 255
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = cls
    return mask


def write_mask(path: Path, mask: np.ndarray, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if grey:
        Image.fromarray(mask.astype(np.uint8)).convert("L").save(path)
    else:
        save_label_png(path, mask)


def write_saliency(path: Path, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))).save(path)


def write_split(root: Path, split: str, ids) -> None:
    path = split_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def add_sample(
    root: Path, image_id: str, size: tuple[int, int], *, mask: bool = True, saliency: bool = True, seed: int = 0
) -> None:
    write_jpeg(image_path(root, image_id), *size, seed=seed)
    if mask:
        write_mask(mask_path(root, image_id), make_mask(*size, cls=1 + seed % 20))
    if saliency:
        write_saliency(saliency_path(root, image_id), *size)


def make_valid(root: Path) -> Path:
    """train (4 ids) and val (2 ids) with palette masks and saliency maps; passes every check."""
    for seed, (image_id, size) in enumerate({**TRAIN, **VAL}.items()):
        add_sample(root, image_id, size, seed=seed)
    write_split(root, "train", TRAIN)
    write_split(root, "val", VAL)
    return root


def run_cli(root: Path, *extra: str) -> int:
    return drs.cli.main(["check-dataset", str(root), "--workers", "1", *extra])


# --------------------------------------------------------------------------------------------
# A valid folder
# --------------------------------------------------------------------------------------------
def test_valid_folder_passes(tmp_path, capsys):
    root = make_valid(tmp_path / "voc")
    report = check_dataset(root, workers=1)
    assert report.problems == []
    assert report.ok
    assert report.splits == {"train": 4, "val": 2}
    assert report.mask_dir == "SegmentationClass" and report.has_saliency and not report.has_parts
    assert len(report.class_names) == 21

    out = tmp_path / "reports" / "check.json"
    assert run_cli(root, "--json", str(out)) == 0
    assert "OK" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["ok"] is True
    assert data["problems"] == []
    assert data["splits"] == {"train": 4, "val": 2}
    assert data["root"] == str(root)
    assert not (Path(out).parent / f".{Path(out).name}.partial").exists()


def test_grey_masks_in_segmentation_class_aug_pass(tmp_path):
    root = tmp_path / "voc"
    for image_id, size in TRAIN.items():
        write_jpeg(image_path(root, image_id), *size)
        write_mask(mask_path(root, image_id, "SegmentationClassAug"), make_mask(*size, cls=20), grey=True)
    write_split(root, "train", TRAIN)
    report = check_dataset(root, workers=1)
    assert report.ok, report.problems
    assert report.mask_dir == "SegmentationClassAug" and not report.has_saliency


def test_only_named_splits_are_checked(tmp_path):
    root = make_valid(tmp_path / "voc")
    image_path(root, "2007_000121").unlink()  # a val image
    assert check_dataset(root, ["train"], workers=1).ok
    report = check_dataset(root, ["val"], workers=1)
    assert [p.path for p in report.problems] == [str(image_path(root, "2007_000121"))]
    missing = check_dataset(root, ["test"], workers=1)
    assert [p.path for p in missing.problems] == [str(split_path(root, "test"))]


# --------------------------------------------------------------------------------------------
# One defect at a time: each returns (the bad file, a fragment of the message)
# --------------------------------------------------------------------------------------------
def image_absent(root):
    path = image_path(root, "2007_000032")
    path.unlink()
    return path, "image missing"


def image_garbage(root):
    path = image_path(root, "2007_000039")
    path.write_bytes(b"\x00garbage, not a JPEG\xff" * 20)
    return path, "image cannot decode"


def image_truncated(root):
    path = image_path(root, "2007_000063")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "image cannot decode"


def mask_wrong_size(root):
    path = mask_path(root, "2007_000068")
    write_mask(path, make_mask(47, 23))  # transposed
    return path, "mask size (23, 47) differs from the image's (47, 23)"


def mask_value_out_of_range(root):
    path = mask_path(root, "2007_000121")
    mask = make_mask(*VAL["2007_000121"])
    mask[0, 0] = 30
    write_mask(path, mask)
    return path, "[30]"


def mask_missing(root):
    path = mask_path(root, "2007_000123")
    path.unlink()
    return path, "mask missing"


def mask_rgb(root):
    path = mask_path(root, "2007_000032")
    height, width = TRAIN["2007_000032"]
    Image.new("RGB", (width, height), (128, 0, 0)).save(path)
    return path, "mode RGB"


def saliency_missing(root):
    path = saliency_path(root, "2007_000039")
    path.unlink()
    return path, "saliency map missing"


def saliency_wrong_size(root):
    path = saliency_path(root, "2007_000063")
    write_saliency(path, 10, 10)
    return path, "saliency map size (10, 10) differs"


def id_listed_twice(root):
    path = split_path(root, "train")
    write_split(root, "train", [*TRAIN, "2007_000063"])
    return path, "2007_000063 listed 2 times"


def split_list_empty(root):
    path = split_path(root, "val")
    path.write_text("\n\n")
    return path, "empty"


DEFECTS = [
    image_absent,
    image_garbage,
    image_truncated,
    mask_wrong_size,
    mask_value_out_of_range,
    mask_missing,
    mask_rgb,
    saliency_missing,
    saliency_wrong_size,
    id_listed_twice,
    split_list_empty,
]


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.__name__ for d in DEFECTS])
def test_single_defect_names_the_bad_file(tmp_path, defect):
    root = make_valid(tmp_path / "voc")
    bad, fragment = defect(root)
    report = check_dataset(root, workers=1)
    assert not report.ok
    assert len(report.problems) == 1, report.problems
    (problem,) = report.problems
    assert problem.path == str(bad)
    assert fragment in problem.message
    assert str(bad) in str(problem)


def test_empty_split_is_counted_as_zero(tmp_path):
    root = make_valid(tmp_path / "voc")
    split_list_empty(root)
    assert check_dataset(root, workers=1).splits == {"train": 4, "val": 0}


def test_several_defects_are_all_reported(tmp_path, capsys):
    root = make_valid(tmp_path / "voc")
    # one defect per id (or list), so none hides another
    planted = [
        image_absent(root),  # 2007_000032
        saliency_missing(root),  # 2007_000039
        saliency_wrong_size(root),  # 2007_000063
        mask_wrong_size(root),  # 2007_000068
        mask_value_out_of_range(root),  # 2007_000121
        mask_missing(root),  # 2007_000123
        id_listed_twice(root),  # train.txt
    ]
    bad_paths = sorted(str(path) for path, _ in planted)

    report = check_dataset(root, workers=1)
    assert len(report.problems) == len(planted) == 7
    assert sorted(p.path for p in report.problems) == bad_paths
    for path, fragment in planted:
        assert any(p.path == str(path) and fragment in p.message for p in report.problems), (path, fragment)

    out = tmp_path / "check.json"
    assert run_cli(root, "--json", str(out)) == 1
    stdout = capsys.readouterr().out
    for path in bad_paths:
        assert path in stdout
    assert "7 problem(s)" in stdout
    assert not out.exists()
    assert not (Path(out).parent / f".{Path(out).name}.partial").exists()
    # without --json the exit status is the same
    assert run_cli(root) == 1


def test_missing_required_folders(tmp_path):
    root = tmp_path / "voc"
    root.mkdir()
    report = check_dataset(root, workers=1)
    paths = {p.path for p in report.problems}
    assert str(root / "JPEGImages") in paths
    assert str(root / SPLITS) in paths
    assert run_cli(tmp_path / "absent") == 2  # UserError: no such folder


def test_split_with_labels_file_needs_no_masks(tmp_path):
    root = make_valid(tmp_path / "voc")
    test_ids = {"2008_000001": (29, 43), "2008_000002": (43, 29)}
    for image_id, size in test_ids.items():
        add_sample(root, image_id, size, mask=False)
    write_split(root, "test", test_ids)
    (root / SPLITS / "test_labels.txt").write_text("2008_000001 cat dog\n2008_000002 person\n")

    report = check_dataset(root, workers=1)
    assert report.ok, report.problems
    assert report.splits == {"test": 2, "train": 4, "val": 2}  # test_labels.txt is not a split

    # the labels file is what exempts the split: without it both masks are missing
    (root / SPLITS / "test_labels.txt").unlink()
    report = check_dataset(root, workers=1)
    assert sorted(p.path for p in report.problems) == sorted(str(mask_path(root, i)) for i in test_ids)
    assert all("mask missing" in p.message for p in report.problems)


def test_id_in_labelled_split_and_masked_split_still_needs_its_mask(tmp_path):
    root = make_valid(tmp_path / "voc")
    write_split(root, "test", ["2007_000032"])
    (root / SPLITS / "test_labels.txt").write_text("2007_000032 cat\n")
    mask_path(root, "2007_000032").unlink()
    report = check_dataset(root, workers=1)
    assert [p.path for p in report.problems] == [str(mask_path(root, "2007_000032"))]


# --------------------------------------------------------------------------------------------
# End to end: the synthetic set passes
# --------------------------------------------------------------------------------------------
def test_synthetic_set_passes(tmp_path):
    spec = SynthSpec(num_train=12, num_val=4, image_size=64, object_size=(24, 40), num_classes=3)
    out = generate(tmp_path / "synth", spec, workers=1)
    report = check_dataset(out, workers=1)
    assert report.problems == []
    assert report.ok
    assert report.splits == {"train": 12, "trainval": 16, "val": 4}
    assert report.class_names == spec.class_names()
    assert report.has_saliency and report.has_parts


def test_split_without_masks_or_labels_needs_a_mask_folder(tmp_path):
    root = tmp_path / "nomasks"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "JPEGImages" / "a.jpg")
    (root / "ImageSets/Segmentation/train.txt").write_text("a\n")
    report = check_dataset(root, workers=1)
    assert [p.path for p in report.problems] == [str(root / "SegmentationClass")]
    assert "train_labels.txt" in report.problems[0].message


def test_labels_file_contents_are_checked(tmp_path):
    root = tmp_path / "labelled"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.new("RGB", (20, 10)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets/Segmentation/test.txt").write_text("a\nb\nc\n")
    (root / "ImageSets/Segmentation/test_labels.txt").write_text("a cat\nb unicorn\n")
    report = check_dataset(root, workers=1)
    paths = sorted(p.path for p in report.problems)
    assert paths == [
        str(root / "ImageSets/Segmentation/test_labels.txt"),
        str(root / "ImageSets/Segmentation/test_labels.txt") + ":2",
    ]
    assert any("unicorn" in p.message for p in report.problems)
    assert any("['c']" in p.message for p in report.problems)
