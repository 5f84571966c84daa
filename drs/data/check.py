"""`drs check-dataset`: validate a folder in PASCAL VOC layout and name every bad file.

Checks, for every id of every split list: the image exists and decodes; its mask (where a mask
folder exists, and unless the split's labels come from ``<split>_labels.txt``) exists, decodes as a
palette/grey PNG of the image's size, and holds only 0..C and 255; saliency maps and part masks
(where those folders exist) exist, decode and match the image size. Also: duplicate ids in a list,
a split list that names no file at all, and ids that are not plain file names (path separators,
``..``, a leading dot, whitespace, control characters: file and line named).

Saliency maps follow the pseudo labels' settings (``drs pseudo-labels --saliency --missing-saliency``,
config ``pseudo_labels.saliency`` and ``missing_saliency``): with ``none`` they are not checked; with
``saliency_map`` every listed image needs one, and with ``missing_saliency="threshold"`` a missing
map (or folder) is a warning, not a problem, as those images' pseudo labels use the background
threshold. Without either option, the maps of a saliency folder are checked where there is one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from drs.config.settings import MISSING_SALIENCY_MODES, SALIENCY_MODES
from drs.data.voc import IGNORE, IMAGE_DIR, MASK_DIRS, PART_DIR, SALIENCY_DIR, SPLIT_DIR, read_class_names, split_lines
from drs.errors import UserError
from drs.labels.rule import DEFAULTS
from drs.util.files import usable_cores
from drs.util.processes import map_in_workers


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _decode(path: Path) -> tuple[Image.Image | None, str | None]:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy(), None
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"cannot decode ({err})"


def _check_label_png(path: Path, size: tuple[int, int] | None, num_classes: int, what: str) -> list[Problem]:
    image, err = _decode(path)
    if err:
        return [Problem(str(path), f"{what} {err}")]
    problems = []
    if image.mode not in ("P", "L"):
        return [
            Problem(str(path), f"{what} must be a palette (P) or grey (L) PNG of class indices, got mode {image.mode}")
        ]
    if size is not None and image.size != size:
        problems.append(Problem(str(path), f"{what} size {image.size} differs from the image's {size}"))
    values = np.unique(np.asarray(image))
    bad = values[(values > num_classes) & (values != IGNORE)]
    if bad.size:
        problems.append(
            Problem(str(path), f"{what} has label values {bad.tolist()} outside 0..{num_classes} and {IGNORE}")
        )
    return problems


def _check_one(task: tuple[str, str, str | None, str | None, bool, int]) -> list[Problem]:
    """``saliency``: None (not checked), "required", or "optional" (a missing map is no problem)."""
    root, image_id, mask_dir, saliency, parts, num_classes = task
    root_ = Path(root)
    problems = []
    image_path = root_ / IMAGE_DIR / f"{image_id}.jpg"
    image, err = _decode(image_path)
    size = None
    if err:
        problems.append(Problem(str(image_path), f"image {err}"))
    else:
        size = image.size
    if mask_dir is not None:
        problems += _check_label_png(root_ / mask_dir / f"{image_id}.png", size, num_classes, "mask")
    if parts:
        problems += _check_label_png(root_ / PART_DIR / f"{image_id}.png", size, num_classes, "part mask")
    if saliency:
        path = root_ / SALIENCY_DIR / f"{image_id}.png"
        sal, err = _decode(path)
        if err == "missing" and saliency == "optional":
            pass  # counted in check_dataset's warning
        elif err:
            problems.append(Problem(str(path), f"saliency map {err}"))
        elif size is not None and sal.size != size:
            problems.append(Problem(str(path), f"saliency map size {sal.size} differs from the image's {size}"))
    return problems


def _check_labels_file(path: Path, ids: list[str], class_names: list[str]) -> list[Problem]:
    """Image-level labels "<id> <class> ...": known class names, a line for every listed id."""
    problems = []
    seen = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        seen.add(fields[0])
        unknown = [f for f in fields[1:] if f not in class_names[1:]]
        if unknown:
            problems.append(Problem(f"{path}:{lineno}", f"unknown class name(s) {unknown}"))
    missing = [i for i in ids if i not in seen]
    if missing:
        problems.append(Problem(str(path), f"no labels for {len(missing)} listed id(s), e.g. {missing[:5]}"))
    return problems


@dataclass
class Report:
    root: str
    class_names: list[str]
    mask_dir: str | None
    has_saliency: bool
    has_parts: bool
    splits: dict[str, int]
    problems: list[Problem]
    warnings: list[Problem] = field(default_factory=list)  # what may be so (missing_saliency)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        data["problems"] = [asdict(p) for p in self.problems]
        data["warnings"] = [asdict(w) for w in self.warnings]
        return data


def check_dataset(
    root: str | Path,
    splits: list[str] | None = None,
    workers: int | None = None,
    saliency: str | None = None,
    missing_saliency: str = DEFAULTS.missing_saliency,
) -> Report:
    """Validate ``root``; every problem found is in the report (nothing stops at the first).
    ``saliency`` and ``missing_saliency`` as in the module's docstring."""
    for name, value, choices in (
        ("saliency", saliency, (None, *SALIENCY_MODES)),
        ("missing_saliency", missing_saliency, MISSING_SALIENCY_MODES),
    ):
        if value not in choices:
            raise UserError(f"{name} must be one of {list(choices)}, got {value!r}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found")
    problems: list[Problem] = []
    for sub in (IMAGE_DIR, str(SPLIT_DIR)):
        if not (root / sub).is_dir():
            problems.append(Problem(str(root / sub), "required folder missing"))
    class_names = list(read_class_names(root))
    num_classes = len(class_names) - 1
    mask_dir = next((d for d in MASK_DIRS if (root / d).is_dir()), None)
    has_saliency = (root / SALIENCY_DIR).is_dir()
    parts = (root / PART_DIR).is_dir()
    warnings: list[Problem] = []
    saliency_check = None
    if saliency != "none" and has_saliency:
        saliency_check = "optional" if missing_saliency == "threshold" else "required"
    elif saliency == "saliency_map":
        missing_dir = Problem(
            str(root / SALIENCY_DIR),
            "saliency folder missing: pseudo labels with saliency need a map per image "
            "(or --missing-saliency threshold, --saliency none; config pseudo_labels.missing_saliency, .saliency)",
        )
        (warnings if missing_saliency == "threshold" else problems).append(missing_dir)

    if splits is None:
        lists = sorted((root / SPLIT_DIR).glob("*.txt")) if (root / SPLIT_DIR).is_dir() else []
        splits = [p.stem for p in lists if not p.stem.endswith("_labels")]
        if not splits and (root / SPLIT_DIR).is_dir():
            problems.append(Problem(str(root / SPLIT_DIR), "no split lists (<split>.txt)"))
    counts: dict[str, int] = {}
    tasks: dict[str, tuple] = {}
    for split in splits:
        path = root / SPLIT_DIR / f"{split}.txt"
        if not path.exists():
            problems.append(Problem(str(path), "split list missing"))
            continue
        ids, bad_lines = split_lines(path)
        problems += [
            Problem(f"{path}:{lineno}", f"{message}; ids are file names without folders")
            for lineno, message in bad_lines
        ]
        counts[split] = len(ids)
        if not ids and not bad_lines:
            problems.append(Problem(str(path), "split list is empty"))
        for image_id, n in Counter(ids).items():
            if n > 1:
                problems.append(Problem(str(path), f"id {image_id} listed {n} times"))
        labels_path = root / SPLIT_DIR / f"{split}_labels.txt"
        labels_file = labels_path.exists()
        if labels_file:
            problems += _check_labels_file(labels_path, ids, class_names)
        elif mask_dir is None:
            problems.append(
                Problem(
                    str(root / MASK_DIRS[-1]),
                    f"no mask folder ({' or '.join(MASK_DIRS)}) and no {labels_path.name} for split {split}",
                )
            )
        split_mask_dir = None if (mask_dir is None or labels_file) else mask_dir
        for image_id in ids:
            key = image_id
            if key in tasks and tasks[key][2] is not None:
                continue  # already checked with its mask through another list
            tasks[key] = (str(root), image_id, split_mask_dir, saliency_check, parts, num_classes)

    workers = workers or min(usable_cores(), 8)
    todo = list(tasks.values())
    # few files: checked inline; else by workers that die with this process
    results = map_in_workers(_check_one, todo, workers if len(todo) > 64 else 1, chunksize=64)
    for found in results:
        problems += found
    if saliency_check == "optional":
        missing = [i for i in tasks if not (root / SALIENCY_DIR / f"{i}.png").exists()]
        if missing:
            warnings.append(
                Problem(
                    str(root / SALIENCY_DIR),
                    f"no saliency map for {len(missing)} of {len(tasks)} listed image(s), e.g. {missing[:5]}: "
                    "their pseudo labels use the background threshold (missing_saliency: threshold)",
                )
            )
    return Report(str(root), class_names, mask_dir, has_saliency, parts, counts, problems, warnings)
