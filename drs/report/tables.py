"""The report's tables as cells: one row per metrics file, grouped by stage, and the headline."""

from __future__ import annotations

from dataclasses import dataclass

from drs.errors import UserError
from drs.report.render import pct

STAGES = ("cam", "refined", "segmentation")
STAGE_TITLES = {
    "cam": "classifier maps",
    "refined": "refined maps",
    "segmentation": "segmenter",
}


@dataclass
class Row:
    """One line of the comparison table: one metrics file."""

    label: str
    experiment: str
    stage: str  # cam, refined, segmentation
    supervision: str  # image or full
    scored: str
    split: str
    num_images: int | None
    miou: float
    pixel_accuracy: float
    per_class_iou: dict
    ratio: float | None = None  # weak / full val mIoU, segmenter rows on pseudo labels
    reference: bool = False  # the fully supervised row the ratios divide by
    network: str = ""  # the segmenter's name (DeepLabV3+, DeepLab-V2); "" for pseudo-label rows

    @property
    def group(self) -> int:
        if self.stage == "segmentation":
            return 3 if self.supervision == "full" else 2
        return STAGES.index(self.stage)


#: the name of each segmenter architecture in the tables (a segmentation.json's network.architecture)
NETWORK_NAMES = {"deeplabv3plus": "DeepLabV3+", "deeplabv2": "DeepLab-V2"}


def network_name(metrics: dict) -> str:
    """The segmenter a segmentation.json scores (DeepLabV3+ for files that do not say)."""
    return NETWORK_NAMES.get((metrics.get("network") or {}).get("architecture"), "DeepLabV3+")


def _row(experiment: str, stage: str, metrics: dict, label: str) -> Row:
    supervision = str(metrics.get("supervision") or "image")
    network = network_name(metrics) if stage == "segmentation" else ""
    if stage == "cam":
        name, scored = label, "pseudo labels from the classifier's maps"
    elif stage == "refined":
        name, scored = f"{label} + refinement", "pseudo labels from the refined maps"
    elif supervision == "full":
        name, scored = f"{network} fully supervised", f"{network} trained on ground-truth masks"
    else:
        name, scored = f"{network} on {label} pseudo labels", f"{network} trained on pseudo labels"
    if stage == "segmentation" and metrics.get("multi_scale"):
        scored += " (multi-scale)"
    if (
        stage in ("cam", "refined")
        and metrics.get("headline_protocol") == "reference"
        and metrics.get("reference_protocol")
    ):
        # drs.labels.scoring: the reference's scoring (no ignore step, every pixel counted) leads
        metrics = metrics["reference_protocol"]
        scored += ", scored as the reference does (no ignore step, every pixel counted)"
    return Row(
        label=name,
        experiment=experiment,
        stage=stage,
        supervision=supervision,
        scored=scored,
        split=str(metrics["split"]),
        num_images=metrics.get("num_images"),
        miou=float(metrics["miou"]),
        pixel_accuracy=float(metrics["pixel_accuracy"]),
        per_class_iou=dict(metrics["per_class_iou"]),
        network=network,
    )


def comparison_rows(metrics: dict[tuple[str, str], dict], labels: dict[str, str] | None = None) -> list[Row]:
    """Rows for ``{(experiment, stage): metrics}``: grouped by stage (classifier maps, refined maps,
    DeepLabV3+ on pseudo labels, fully supervised), experiments in the order first given.

    ``labels`` names an experiment's method (e.g. drs -> "DRS"; default: the experiment's name). For
    each network, its first fully supervised row is the reference of the weak / full ratios, taken
    for that network's rows on pseudo labels scored on the same split.
    """
    labels = labels or {}
    order = {}
    for experiment, _ in metrics:
        order.setdefault(experiment, len(order))
    rows = []
    for (experiment, stage), values in metrics.items():
        if stage not in STAGES:
            raise UserError(
                f"unknown stage {stage!r} for experiment {experiment!r}; expected one of {', '.join(STAGES)}"
            )
        rows.append(_row(experiment, stage, values, labels.get(experiment, experiment)))
    rows.sort(key=lambda r: (r.group, order[r.experiment]))
    for network in dict.fromkeys(r.network for r in rows if r.group == 3):
        full = next(r for r in rows if r.group == 3 and r.network == network)
        full.reference = True
        for row in rows:
            if row.group == 2 and row.network == network and row.split == full.split and full.miou > 0:
                row.ratio = row.miou / full.miou
    return rows


def class_order(metrics: list[dict]) -> list[str]:
    """Class names in the order of the first metrics file (background first), then any others."""
    names: list[str] = []
    for values in metrics:
        for name in values.get("class_names") or values["per_class_iou"]:
            if name not in names:
                names.append(name)
    return names


def _ratio(row: Row) -> str:
    if row.reference:
        return "reference"
    return "–" if row.ratio is None else f"{100 * row.ratio:.1f}%"


COMPARISON_HEADER = [
    "",
    "experiment",
    "scored",
    "split",
    "images",
    "mIoU (%)",
    "pixel accuracy (%)",
    "weak / full mIoU",
]
COMPARISON_ALIGN = ["l", "l", "l", "l", "r", "r", "r", "r"]


def comparison_cells(rows: list[Row]) -> list[list[str]]:
    return [
        [
            r.label,
            r.experiment,
            r.scored,
            r.split,
            "–" if r.num_images is None else str(r.num_images),
            pct(r.miou),
            pct(r.pixel_accuracy),
            _ratio(r),
        ]
        for r in rows
    ]


def experiment_table(
    experiment: str, metrics: dict[str, dict], class_names: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one experiment's per-class table: one column per stage it has."""
    stages = [s for s in STAGES if s in metrics]
    titles = {**STAGE_TITLES, "segmentation": network_name(metrics.get("segmentation") or {})}
    header = ["class"] + [f"{titles[s]} ({metrics[s]['split']})" for s in stages]
    cells = [[name] + [pct(metrics[s]["per_class_iou"].get(name)) for s in stages] for name in class_names]
    cells.append(["mIoU"] + [pct(metrics[s]["miou"]) for s in stages])
    cells.append(["pixel accuracy"] + [pct(metrics[s]["pixel_accuracy"]) for s in stages])
    cells.append(["images"] + [str(metrics[s].get("num_images", "–")) for s in stages])
    return header, cells


def headline(rows: list[Row], main: str | None, baseline: str | None = None) -> list[str]:
    """Sentences with the main experiment's numbers, as markdown list items."""

    def find(experiment, stage, supervision="image"):
        return next(
            (r for r in rows if r.experiment == experiment and r.stage == stage and r.supervision == supervision), None
        )

    if main is None and rows:
        main = next((r.experiment for r in rows if r.supervision == "image"), rows[0].experiment)
    lines = []
    # the main experiment's segmenter, else the first on pseudo labels (e.g. DeepLab-V2 on its labels)
    segmentation = find(main, "segmentation") or next((r for r in rows if r.group == 2), None)
    network = segmentation.network if segmentation is not None else None
    full = next((r for r in rows if r.reference and network in (None, r.network)), None)
    if segmentation is not None:
        text = f"{segmentation.label}: {pct(segmentation.miou)}% mIoU on {segmentation.split}"
        if segmentation.num_images is not None:
            text += f" ({segmentation.num_images} images)"
        if segmentation.ratio is not None:
            text += f", {_ratio(segmentation)} of the fully supervised model's {pct(full.miou)}%"
        lines.append(text + ".")
    elif full is not None:
        lines.append(f"{full.label}: {pct(full.miou)}% mIoU on {full.split}.")
    cam, refined = find(main, "cam"), find(main, "refined")
    base = find(baseline, "cam") if baseline and baseline != main else None
    if cam is not None or refined is not None:
        first = cam or refined
        parts = []
        if cam is not None:
            text = f"{pct(cam.miou)}% from the {cam.label} maps"
            if base is not None:
                text += f" ({base.label}: {pct(base.miou)}%)"
            parts.append(text)
        if refined is not None:
            parts.append(f"{pct(refined.miou)}% after refinement")
        count = f" ({first.num_images} images)" if first.num_images is not None else ""
        lines.append(f"Pseudo labels scored on {first.split}{count}: mIoU " + ", ".join(parts) + ".")
    if not lines:
        lines.append(f"No metrics of the main experiment {main!r} yet.")
    return [f"- {line}" for line in lines]


def comparison_note(rows: list[Row]) -> str:
    """What the rows of the table score, for the kinds of rows it has."""
    notes = []
    if any(r.stage != "segmentation" for r in rows):
        notes.append(
            "Pseudo-label rows score the labels made from the maps against the ground truth of their "
            "images (their quality as training targets)."
        )
    if any(r.stage == "segmentation" for r in rows):
        notes.append("Segmenter rows (DeepLabV3+, DeepLab-V2) score the trained network on its evaluation split.")
    if any(r.reference for r in rows):
        notes.append(
            "weak / full: the mIoU of a segmenter trained on pseudo labels as a fraction of the same "
            "network's trained on ground-truth masks (the fully supervised reference)."
        )
    return " ".join(notes)


def chart_series(rows: list[Row]) -> list[tuple[str, dict]]:
    """(name, {class: IoU, "mIoU": mIoU}) per row; names made unique with the experiment."""
    names = [r.label for r in rows]
    series = []
    for row in rows:
        name = row.label if names.count(row.label) == 1 else f"{row.label} [{row.experiment}]"
        series.append((f"{name} ({row.split})", {**row.per_class_iou, "mIoU": row.miou}))
    return series
