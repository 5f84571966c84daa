"""Reader for datasets in PASCAL VOC 2012 layout.

Layout (relative to the dataset root)::

    JPEGImages/<id>.jpg                       RGB images, any size
    SegmentationClassAug/<id>.png             class-index masks (preferred when present), or
    SegmentationClass/<id>.png                palette or grey PNG: 0 background, 1..C classes, 255 ignored
    saliency_map/<id>.png                     8-bit grey saliency, 255 = salient (optional)
    SegmentationPart/<id>.png                 discriminative-part masks (synthetic sets only)
    ImageSets/Segmentation/<split>.txt        one id per line
    ImageSets/Segmentation/<split>_labels.txt optional image-level labels: "<id> <class> <class> ..."
    class_names.txt                           optional: one name per line, background first
                                              (absent: the 20 PASCAL VOC classes)

Image-level labels come from the masks; a split whose masks are absent (e.g. VOC test) takes them
from ``<split>_labels.txt``.
"""

from __future__ import annotations

import unicodedata
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from drs.errors import UserError

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

IGNORE = 255
IMAGE_DIR = "JPEGImages"
MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")
SALIENCY_DIR = "saliency_map"
PART_DIR = "SegmentationPart"
SPLIT_DIR = Path("ImageSets") / "Segmentation"
CLASS_NAMES_FILE = "class_names.txt"


@lru_cache(maxsize=1)
def _palette() -> tuple[int, ...]:
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return tuple(palette)


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 RGB triples, flattened), as used by its palette PNGs."""
    return list(_palette())


def save_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write a class-index array as a palette PNG in the VOC convention (255 = ignore)."""
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path, optimize=False)


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a class-index mask (palette 'P' or grey 'L' PNG) as a uint8 array (UserError naming
    the file when it is missing or does not decode)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise UserError(
                    f"{path}: mask must be a palette (P) or grey (L) PNG of class indices, got mode {image.mode}"
                )
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"{path}: label PNG not found") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL: truncated or corrupt data
        raise UserError(f"{path}: cannot decode PNG ({err})") from None


def check_label_values(label: np.ndarray, num_classes: int, path: str | Path) -> np.ndarray:
    """``label`` itself when it holds only 0..num_classes and 255; else UserError naming ``path``."""
    bad = np.unique(label[(label > num_classes) & (label != IGNORE)])
    if bad.size:
        raise UserError(f"{path}: label value(s) {bad.tolist()} out of range (0..{num_classes} or {IGNORE} = ignore)")
    return label


def read_class_names(root: str | Path) -> tuple[str, ...]:
    """Class names of a dataset, background first."""
    path = Path(root) / CLASS_NAMES_FILE
    if not path.exists():
        return VOC_CLASSES
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) < 2:
        raise UserError(f"{path}: needs background plus at least one class, one name per line")
    if len(set(names)) != len(names):
        raise UserError(f"{path}: class names must be unique")
    return names


def id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot name files (``<folder>/<id>.png``) safely, or None when it can: ids
    are plain file names, without path separators, ``..``, a leading dot, whitespace or control
    characters (so that no stage reads or writes outside its folders)."""
    if not image_id:
        return "empty id"
    if "/" in image_id or "\\" in image_id:
        return f"id {image_id!r} contains a path separator"
    if image_id.startswith("."):
        return f"id {image_id!r} starts with a dot"
    if any(ch.isspace() for ch in image_id):
        return f"id {image_id!r} contains whitespace (one id per line)"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in image_id):
        return f"id {image_id!r} contains a control character"
    return None


def split_lines(path: str | Path) -> tuple[list[str], list[tuple[int, str]]]:
    """(ids, problems) of a split list: one id per line, blank lines skipped, surrounding
    whitespace (and CRLF line ends) dropped; ``problems`` holds (line number, message) for each line
    whose id :func:`id_problem` rejects (those lines are left out of ``ids``)."""
    ids, problems = [], []
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    for lineno, line in enumerate(text.split("\n"), 1):
        image_id = line.strip()
        if not image_id:
            continue
        problem = id_problem(image_id)
        if problem:
            problems.append((lineno, problem))
        else:
            ids.append(image_id)
    return ids, problems


def read_split(root: str | Path, split: str) -> list[str]:
    """Ids listed in ImageSets/Segmentation/<split>.txt (UserError naming the file and line of the
    first id that is not a plain file name)."""
    path = Path(root) / SPLIT_DIR / f"{split}.txt"
    if not path.exists():
        raise UserError(f"{path}: split list not found (expected one image id per line)")
    ids, problems = split_lines(path)
    if problems:
        lineno, problem = problems[0]
        more = f" ({len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        raise UserError(f"{path}:{lineno}: {problem}{more}; ids are file names without folders")
    if not ids:
        raise UserError(f"{path}: split list is empty")
    return ids


class VOCDataset:
    """Random access to one split of a VOC-layout folder (numpy arrays, no torch).

    ``mask_dir`` picks the mask folder; by default SegmentationClassAug when it exists, else
    SegmentationClass.
    """

    def __init__(self, root: str | Path, split: str, mask_dir: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: dataset folder not found")
        self.split = split
        self.ids = read_split(self.root, split)
        self.class_names = read_class_names(self.root)
        if mask_dir is None:
            mask_dir = next((d for d in MASK_DIRS if (self.root / d).is_dir()), MASK_DIRS[-1])
        self.mask_dir = mask_dir

    @property
    def num_classes(self) -> int:
        """Number of foreground classes C (labels 1..C)."""
        return len(self.class_names) - 1

    def __len__(self) -> int:
        return len(self.ids)

    # -- paths ---------------------------------------------------------------------------------
    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_dir / f"{image_id}.png"

    def saliency_path(self, image_id: str) -> Path:
        return self.root / SALIENCY_DIR / f"{image_id}.png"

    def part_path(self, image_id: str) -> Path:
        return self.root / PART_DIR / f"{image_id}.png"

    @property
    def has_saliency(self) -> bool:
        return (self.root / SALIENCY_DIR).is_dir()

    @property
    def has_parts(self) -> bool:
        return (self.root / PART_DIR).is_dir()

    # -- arrays --------------------------------------------------------------------------------
    def load_image(self, image_id: str) -> np.ndarray:
        """HxWx3 uint8 RGB."""
        path = self.image_path(image_id)
        try:
            with Image.open(path) as image:
                return np.array(image.convert("RGB"))
        except FileNotFoundError:
            raise UserError(f"{path}: image not found (listed in {self.split}.txt)") from None
        except OSError as err:
            raise UserError(f"{path}: cannot decode image ({err})") from None

    def load_mask(self, image_id: str) -> np.ndarray:
        """HxW uint8 class indices (0 background, 1..C, 255 ignore); UserError naming the file when
        it is missing, does not decode or holds other values."""
        path = self.mask_path(image_id)
        if not path.exists():
            raise UserError(f"{path}: mask not found (listed in {self.split}.txt)")
        return check_label_values(read_label_png(path), self.num_classes, path)

    def load_saliency(self, image_id: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """HxW float32 in [0, 1]; 1 = salient. With ``size`` (H, W): UserError unless it has that size."""
        path = self.saliency_path(image_id)
        if not path.exists():
            raise UserError(f"{path}: saliency map not found (listed in {self.split}.txt)")
        try:
            with Image.open(path) as image:
                saliency = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except (OSError, SyntaxError, ValueError) as err:
            raise UserError(f"{path}: cannot decode saliency map ({err})") from None
        if size is not None and saliency.shape != tuple(size):
            h, w = size
            raise UserError(
                f"{path}: saliency map is {saliency.shape[0]}x{saliency.shape[1]} but its image is {h}x{w} (HxW)"
            )
        return saliency

    def load_part_mask(self, image_id: str) -> np.ndarray:
        """HxW uint8: the class index on each object's discriminative part, 0 elsewhere."""
        return read_label_png(self.part_path(image_id))

    # -- image-level labels ----------------------------------------------------------------------
    @cached_property
    def _label_file(self) -> dict[str, np.ndarray] | None:
        path = self.root / SPLIT_DIR / f"{self.split}_labels.txt"
        if not path.exists():
            return None
        index = {name: i for i, name in enumerate(self.class_names)}
        labels = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            unknown = [f for f in fields[1:] if f not in index or index[f] == 0]
            if unknown:
                raise UserError(f"{path}:{lineno}: unknown class name(s) {unknown}")
            labels[fields[0]] = np.array(sorted({index[f] for f in fields[1:]}), dtype=np.int64)
        return labels

    def labels(self, image_id: str) -> np.ndarray:
        """Sorted foreground class indices (1..C) present in the image."""
        if self._label_file is not None and image_id in self._label_file:
            return self._label_file[image_id]
        if not self.mask_path(image_id).exists() and self._label_file is not None:
            raise UserError(f"{image_id}: neither a mask nor a line in {self.split}_labels.txt")
        present = np.unique(self.load_mask(image_id))  # values checked by load_mask
        return present[(present > 0) & (present != IGNORE)].astype(np.int64)

    def multi_hot(self, image_id: str) -> np.ndarray:
        """Length-C float32 vector, 1 for each present foreground class."""
        target = np.zeros(self.num_classes, dtype=np.float32)
        target[self.labels(image_id) - 1] = 1.0
        return target
