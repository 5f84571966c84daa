"""Pictures for the report: strips of image | ground truth | maps | labels, and a per-class IoU chart.

Labels are drawn in the PASCAL VOC palette (255 = ignored, VOC's cream colour); localization maps as
heat overlays (the maximum over the image's classes) on the image. PNGs are written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from drs.data.voc import IGNORE, VOCDataset, read_label_png, voc_palette
from drs.errors import UserError
from drs.store.reader import MapStore

BACKGROUND = (255, 255, 255)
PANEL_FILL = (236, 236, 236)
TEXT = (20, 20, 20)
GAP = 4


def font(size: int):
    """Pillow's scalable built-in font at ``size`` pixels (a bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def palette_array() -> np.ndarray:
    """The VOC palette as a (256, 3) uint8 array: ``palette_array()[label]`` colours a label map."""
    return np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)


def colour_labels(label: np.ndarray) -> np.ndarray:
    return palette_array()[np.asarray(label, dtype=np.uint8)]


def heat_overlay(image: np.ndarray, heat: np.ndarray, weight: float = 0.55) -> np.ndarray:
    """The image under a jet-like colouring of ``heat`` (HxW in [0, 1], resized to the image)."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != image.shape[:2]:
        heat = resize(heat, image.shape[:2], nearest=False)
    blended = (1.0 - weight) * image.astype(np.float32) + weight * heat_colors(heat)
    return np.round(blended).astype(np.uint8)


def resize(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize an (H, W) or (H, W, 3) array to ``size`` = (H, W); nearest for labels, bilinear else."""
    height, width = size
    if array.dtype == np.float32 or array.dtype == np.float64:
        image = Image.fromarray(np.asarray(array, dtype=np.float32), mode="F")
        return np.asarray(image.resize((width, height), Image.BILINEAR))
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def fit_in_box(array: np.ndarray, box: int, nearest: bool) -> np.ndarray:
    """An RGB panel scaled to fit a ``box`` x ``box`` square (aspect kept), centred on grey."""
    height, width = array.shape[:2]
    scale = box / max(height, width)
    new = (max(1, round(height * scale)), max(1, round(width * scale)))
    scaled = resize(array, new, nearest=nearest) if new != (height, width) else array
    out = np.empty((box, box, 3), dtype=np.uint8)
    out[:] = PANEL_FILL
    top, left = (box - new[0]) // 2, (box - new[1]) // 2
    out[top : top + new[0], left : left + new[1]] = scaled
    return out


def _tag(panel: np.ndarray, text: str, size: int) -> np.ndarray:
    """Write ``text`` in white on a black box in the panel's top-left corner."""
    image = Image.fromarray(panel)
    draw = ImageDraw.Draw(image)
    face = font(size)
    left, top, right, bottom = draw.textbbox((3, 2), text, font=face)
    draw.rectangle((0, 0, right + 3, bottom + 3), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255), font=face)
    return np.asarray(image)


def _message_panel(box: int, text: str) -> np.ndarray:
    image = Image.new("RGB", (box, box), PANEL_FILL)
    draw = ImageDraw.Draw(image)
    draw.text((box / 2, box / 2), text, fill=(110, 110, 110), font=font(max(10, box // 12)), anchor="mm")
    return np.asarray(image)


# -- a map store's maps (drs inspect --id) ------------------------------------------------------
def heat_colors(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map: values in [0, 1] -> uint8 RGB (dark blue, cyan, yellow, dark red)."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # where r, g, b peak
    rgb = np.clip(1.5 - np.abs(4.0 * (x - centres)), 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def label_panel(panel: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(panel)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((2, 1), text)
    draw.rectangle((0, 0, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(image)


def store_overlay(store, image_id: str, dataset_root: str | Path | None = None) -> np.ndarray:
    """Side by side: the image; the image under each stored class's map (named); the ground truth.
    ``store``: a :class:`drs.store.reader.MapStore` or its path."""
    if not isinstance(store, MapStore):
        with MapStore(store) as opened:
            return store_overlay(opened, image_id, dataset_root)

    record = store.read(image_id)
    root = Path(dataset_root if dataset_root is not None else store.attrs.get("dataset", ""))
    if not str(root) or not root.is_dir():
        raise UserError(
            f"{root}: dataset folder of map store {store.path} not found; pass --dataset ROOT to say where it is"
        )
    data = VOCDataset(root, store.split)
    image = data.load_image(image_id)
    if image.shape[:2] != record.size:
        raise UserError(
            f"{data.image_path(image_id)}: image is {image.shape[0]}x{image.shape[1]} but map store {store.path} "
            f"has {record.size[0]}x{record.size[1]} for {image_id!r}; is --dataset the dataset the maps came from?"
        )
    panels = [image]
    base = image.astype(np.float32)
    for cls, heat in zip(record.classes, np.minimum(record.float(), 1.0)):  # colours cap scores at 1
        blended = np.round(0.5 * base + 0.5 * heat_colors(heat)).astype(np.uint8)
        name = store.class_names[cls] if cls < len(store.class_names) else str(cls)
        panels.append(label_panel(blended, f"{cls} {name}"))
    if data.mask_path(image_id).exists():
        mask = data.load_mask(image_id)
        if mask.shape != image.shape[:2]:
            mask = np.asarray(Image.fromarray(mask).resize(image.shape[1::-1], Image.NEAREST))
        panels.append(label_panel(colour_labels(mask), "ground truth"))
    return np.concatenate(panels, axis=1)


# -- strips --------------------------------------------------------------------------------------
LabelFunction = Callable[[np.ndarray], np.ndarray]


@dataclass
class StripSources:
    """What a strip row shows besides the image and its ground truth, each optional.

    ``maps``: column title -> open :class:`drs.store.reader.MapStore` (drawn as heat overlays, in order);
    ``pseudo_labels``: folder of ``<id>.png``; ``predictor``: image (HxWx3 uint8) -> HxW labels;
    ``coverage``: map column title -> its store's coverage (an eval-maps ``coverage`` section: part,
    rest_of_object, background fractions), printed under that column.
    """

    maps: Mapping[str, object] = field(default_factory=dict)
    pseudo_labels: Path | None = None
    predictor: LabelFunction | None = None
    coverage: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)

    def columns(self) -> list[str]:
        names = ["image", "ground truth", *self.maps]
        if self.pseudo_labels is not None:
            names.append("pseudo label")
        if self.predictor is not None:
            names.append("prediction")
        return names


def pick_strip_ids(dataset, sources: StripSources, count: int) -> list[str]:
    """A deterministic choice of ``count`` ids: the first image (in split order) holding each class
    not yet shown, then the next images in order. Only images every source can draw are taken."""
    candidates = list(dataset.ids)
    for store in sources.maps.values():
        candidates = [i for i in candidates if i in store]
    if sources.pseudo_labels is not None:
        present = {p.stem for p in Path(sources.pseudo_labels).glob("*.png")}
        candidates = [i for i in candidates if i in present]
    if not candidates:
        raise UserError(
            f"no image of {dataset.root} split {dataset.split!r} is in every map store and pseudo-label "
            "folder given; are they from this dataset and split?"
        )
    first_store = next(iter(sources.maps.values()), None)

    def classes(image_id: str) -> set[int]:
        if first_store is not None:
            return {int(c) for c in first_store.header(image_id)[0]}
        return {int(c) for c in dataset.labels(image_id)}

    chosen: list[str] = []
    seen: set[int] = set()
    for image_id in candidates:
        if len(chosen) >= count or len(seen) >= dataset.num_classes:
            break
        new = classes(image_id) - seen
        if new:
            chosen.append(image_id)
            seen |= new
    for image_id in candidates:
        if len(chosen) >= count:
            break
        if image_id not in chosen:
            chosen.append(image_id)
    position = {image_id: n for n, image_id in enumerate(candidates)}
    return sorted(chosen, key=position.__getitem__)


def _read_pseudo_label(folder: Path, image_id: str) -> np.ndarray:
    path = Path(folder) / f"{image_id}.png"
    if not path.exists():
        raise UserError(f"{path}: pseudo label not found")
    try:
        return read_label_png(path)
    except OSError as err:
        raise UserError(f"{path}: cannot read pseudo label ({err})") from None


def strip_row(dataset, image_id: str, sources: StripSources, box: int) -> list[np.ndarray]:
    """The panels of one image, in :meth:`StripSources.columns` order."""
    image = dataset.load_image(image_id)
    shape = image.shape[:2]
    panels = [_tag(fit_in_box(image, box, nearest=False), image_id, max(10, box // 14))]
    if dataset.mask_path(image_id).exists():
        panels.append(fit_in_box(colour_labels(dataset.load_mask(image_id)), box, nearest=True))
    else:
        panels.append(_message_panel(box, "no mask"))
    for store in sources.maps.values():
        record = store.read(image_id)
        # scores, capped at 1 for the colours (refined stores hold scores up to their score_scale)
        heat = np.minimum(record.float().max(axis=0), 1.0) if len(record.classes) else np.zeros(shape, np.float32)
        panels.append(fit_in_box(heat_overlay(image, heat), box, nearest=False))
    if sources.pseudo_labels is not None:
        label = _read_pseudo_label(sources.pseudo_labels, image_id)
        if label.shape != shape:
            label = resize(label, shape, nearest=True)
        panels.append(fit_in_box(colour_labels(label), box, nearest=True))
    if sources.predictor is not None:
        prediction = np.asarray(sources.predictor(image))
        if prediction.shape != shape:
            raise UserError(
                f"the segmenter's prediction for {image_id!r} is {prediction.shape}, not the image's size {shape}"
            )
        panels.append(fit_in_box(colour_labels(prediction.astype(np.uint8)), box, nearest=True))
    return panels


def legend(class_names: Sequence[str], width: int, size: int = 14) -> np.ndarray:
    """Colour swatches with class names (background first, then ignored), wrapped to ``width``."""
    face = font(size)
    palette = palette_array()
    entries = [(tuple(int(v) for v in palette[i]), name) for i, name in enumerate(class_names)]
    entries.append((tuple(int(v) for v in palette[IGNORE]), "ignored (255)"))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    swatch, pad = size, 8
    items = [
        (colour, name, swatch + 4 + int(measure.textlength(name, font=face)) + 2 * pad) for colour, name in entries
    ]
    lines, line, used = [], [], 0
    for item in items:
        if line and used + item[2] > width:
            lines.append(line)
            line, used = [], 0
        line.append(item)
        used += item[2]
    lines.append(line)
    row_height = size + 10
    image = Image.new("RGB", (width, row_height * len(lines) + 6), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        x, y = pad, 4 + n * row_height
        for colour, name, item_width in line:
            draw.rectangle((x, y + 2, x + swatch, y + 2 + swatch), fill=colour, outline=(80, 80, 80))
            draw.text((x + swatch + 4, y + 2 + swatch / 2), name, fill=TEXT, font=face, anchor="lm")
            x += item_width
    return np.asarray(image)


def header(columns: Sequence[str], box: int, size: int = 15) -> np.ndarray:
    width = len(columns) * box + (len(columns) - 1) * GAP
    image = Image.new("RGB", (width, size + 12), BACKGROUND)
    draw = ImageDraw.Draw(image)
    face = font(size)
    for n, name in enumerate(columns):
        draw.text((n * (box + GAP) + box / 2, (size + 12) / 2), name, fill=TEXT, font=face, anchor="mm")
    return np.asarray(image)


COVERAGE_LINES = (("part", "part"), ("rest_of_object", "rest"), ("background", "background"))


def coverage_text(coverage: Mapping[str, float | None]) -> list[str]:
    """The lines printed under a map column: ``part 0.99``, ``rest 0.56``, ``background 0.17``
    (keys the coverage lacks, e.g. part and rest on a dataset without part masks, are left out)."""
    return [f"{label} {coverage[key]:.2f}" for key, label in COVERAGE_LINES if coverage.get(key) is not None]


def coverage_footer(
    columns: Sequence[str], coverage: Mapping[str, Mapping[str, float | None]], box: int, size: int = 14
) -> np.ndarray:
    """A row under the strips: each map column's coverage at alpha, centred under the column."""
    texts = [coverage_text(coverage[name]) if name in coverage else [] for name in columns]
    lines = max([len(t) for t in texts] + [1])
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    longest = max((line for t in texts for line in t), key=len, default="")
    while size > 8 and measure.textlength(longest, font=font(size)) > box - 6:  # each line within its column
        size -= 1
    line_height = size + 4
    width = len(columns) * box + (len(columns) - 1) * GAP
    image = Image.new("RGB", (width, line_height * (lines + 1) + 6), BACKGROUND)
    draw = ImageDraw.Draw(image)
    face = font(size)
    if any(texts):
        draw.text((4, line_height / 2 + 2), "coverage", fill=TEXT, font=face, anchor="lm")
    for n, text in enumerate(texts):
        for k, line in enumerate(text):
            draw.text((n * (box + GAP) + box / 2, line_height * (k + 1.5) + 2), line, fill=TEXT, font=face, anchor="mm")
    return np.asarray(image)


def strip_figure(dataset, ids: Sequence[str], sources: StripSources, box: int = 160) -> np.ndarray:
    """Rows of image | ground truth | one heat overlay per map store | pseudo label | prediction,
    under a header row of column titles and above the map columns' coverage (if given) and a legend
    of the label colours."""
    if not ids:
        raise UserError("no images to draw")
    columns = sources.columns()
    width = len(columns) * box + (len(columns) - 1) * GAP
    parts = [header(columns, box)]
    for image_id in ids:
        panels = strip_row(dataset, image_id, sources, box)
        row = np.full((box, width, 3), 255, dtype=np.uint8)
        for n, panel in enumerate(panels):
            row[:, n * (box + GAP) : n * (box + GAP) + box] = panel
        parts += [row, np.full((GAP, width, 3), 255, dtype=np.uint8)]
    if sources.coverage:
        parts.append(coverage_footer(columns, sources.coverage, box))
    parts.append(legend(dataset.class_names, width))
    return np.concatenate(parts, axis=0)


# -- chart ---------------------------------------------------------------------------------------
def per_class_chart(
    series: Sequence[tuple[str, Mapping[str, float | None]]], class_names: Sequence[str], title: str = ""
) -> bytes:
    """Grouped bars as PNG bytes: one group per class (then mIoU), one bar per series.

    ``series``: (name, {class name or "mIoU": IoU in [0, 1] or None}); a None is no bar.
    """
    matplotlib.use("Agg")

    groups = [*class_names, "mIoU"]
    n = max(1, len(series))
    bar = 0.8 / n
    width_in = min(22.0, max(7.0, len(groups) * (0.13 * n + 0.3) + 1.5))
    columns = max(1, min(n, int(width_in / 3.4)))  # legend entries per line
    legend_rows = math.ceil(n / columns)
    figure = Figure(figsize=(width_in, 4.2 + 0.25 * legend_rows), dpi=110)
    axes = figure.add_subplot()
    if n <= 20:
        palette = matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors
    else:
        palette = [matplotlib.colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, n)]
    x = np.arange(len(groups), dtype=float)
    for k, (name, values) in enumerate(series):
        heights = [values.get(g) for g in groups]
        heights = [np.nan if v is None else 100.0 * float(v) for v in heights]
        axes.bar(
            x - 0.4 + bar * (k + 0.5),
            heights,
            bar,
            label=name,
            color=palette[k % len(palette)],
            edgecolor="white",
            linewidth=0.4,
        )
    axes.set_xticks(x, groups, rotation=30 if len(groups) > 8 else 0, ha="right" if len(groups) > 8 else "center")
    axes.axvline(len(groups) - 1.5, color="0.6", linewidth=0.8, linestyle=":")
    axes.set_ylim(0, 100)
    axes.set_ylabel("IoU (%)")
    axes.set_xlim(-0.6, len(groups) - 0.4)
    axes.grid(axis="y", color="0.88", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if title:
        axes.set_title(title, fontsize=11)
    axes.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14 if len(groups) <= 8 else -0.22),
        ncol=columns,
        frameon=False,
        fontsize=9,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    # "tight" takes the legend below the axes in
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    return buffer.getvalue()


# -- files ---------------------------------------------------------------------------------------
def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
