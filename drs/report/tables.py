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


#: the two scorings of pseudo labels (drs.labels.scoring), as every table names them in its header;
#: a segmenter predicts every pixel, so for its rows the two coincide
SCORINGS = {
    "reference": "the reference's scoring: every pixel counted, ignored (255) pseudo-label pixels count as wrong",
    "ours": "our scoring: ignored pseudo-label pixels left out of the scores, their share given",
}
SCORING_NAMES = {"reference": "reference scoring", "ours": "our scoring"}


@dataclass
class Score:
    """One metrics file's figures under one scoring."""

    miou: float
    pixel_accuracy: float
    per_class_iou: dict
    split: str
    num_images: int | None
    ignored: float | None = None  # the share of pixels left out (our scoring)


@dataclass
class Row:
    """One line of the comparison table: one metrics file, under both scorings."""

    label: str
    experiment: str
    stage: str  # cam, refined, segmentation
    supervision: str  # image or full
    scored: str
    scores: dict  # scoring ("reference", "ours") -> Score; "reference" absent where not scored so
    lead: str = "ours"  # the scoring of the headline and the chart (pseudo_labels.headline_protocol)
    ratio: float | None = None  # weak / full val mIoU, segmenter rows on pseudo labels
    reference: bool = False  # the fully supervised row the ratios divide by
    network: str = ""  # the segmenter's name (DeepLabV3+, DeepLab-V2); "" for pseudo-label rows

    @property
    def group(self) -> int:
        if self.stage == "segmentation":
            return 3 if self.supervision == "full" else 2
        return STAGES.index(self.stage)

    @property
    def split(self) -> str:
        """The split the lead scoring scored (the reference's may be another: pseudo_labels.reference_split)."""
        return self.scores[self.lead].split

    @property
    def num_images(self) -> int | None:
        return self.scores[self.lead].num_images

    @property
    def miou(self) -> float:
        """The mIoU under the lead scoring."""
        return self.scores[self.lead].miou

    @property
    def pixel_accuracy(self) -> float:
        return self.scores[self.lead].pixel_accuracy

    @property
    def per_class_iou(self) -> dict:
        return self.scores[self.lead].per_class_iou


def _score(metrics: dict, ignored=None, split=None) -> Score:
    return Score(
        float(metrics["miou"]),
        float(metrics["pixel_accuracy"]),
        dict(metrics["per_class_iou"]),
        str(metrics.get("split", split)),
        metrics.get("num_images"),
        ignored,
    )


def scores_of(stage: str, metrics: dict) -> tuple[dict, str]:
    """({scoring: Score}, lead scoring) of a metrics file: a pseudo-label file (cam.json,
    refined.json) holds ours at its top and the reference's in ``reference_protocol``; a segmenter
    file one figure, the same under both."""
    ours = _score(metrics, float(metrics.get("ignored_fraction") or 0.0))
    if stage == "segmentation":
        return {"reference": ours, "ours": ours}, "reference"
    scores = {"ours": ours}
    if isinstance(metrics.get("reference_protocol"), dict):
        scores["reference"] = _score(metrics["reference_protocol"], split=metrics["split"])
    lead = "reference" if metrics.get("headline_protocol") == "reference" and "reference" in scores else "ours"
    return scores, lead


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
    scores, lead = scores_of(stage, metrics)
    return Row(
        label=name,
        experiment=experiment,
        stage=stage,
        supervision=supervision,
        scored=scored,
        scores=scores,
        lead=lead,
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
    "mIoU (%), reference scoring",
    "pixel accuracy (%), reference scoring",
    "mIoU (%), our scoring",
    "pixel accuracy (%), our scoring",
    "ignored (%), our scoring",
    "weak / full mIoU, either scoring",
]
COMPARISON_ALIGN = ["l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "r"]


def _cells(score: Score | None) -> list[str]:
    if score is None:
        return ["–", "–"]
    return [pct(score.miou), pct(score.pixel_accuracy)]


def _where(row: Row) -> list[str]:
    """The split and image-count cells: one of each, or one per scoring where they differ."""
    scored = [(SCORING_NAMES[k], v) for k, v in row.scores.items()]
    images = lambda v: "–" if v.num_images is None else str(v.num_images)  # noqa: E731
    if len({(v.split, v.num_images) for _, v in scored}) == 1:
        return [scored[0][1].split, images(scored[0][1])]
    return [
        "; ".join(f"{v.split} ({name})" for name, v in scored),
        "; ".join(f"{images(v)} ({name})" for name, v in scored),
    ]


def comparison_cells(rows: list[Row]) -> list[list[str]]:
    return [
        [
            r.label,
            r.experiment,
            r.scored,
            *_where(r),
            *_cells(r.scores.get("reference")),
            *_cells(r.scores["ours"]),
            "–" if r.scores["ours"].ignored is None else pct(r.scores["ours"].ignored),
            _ratio(r),
        ]
        for r in rows
    ]


def experiment_table(
    experiment: str, metrics: dict[str, dict], class_names: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one experiment's per-class table: per pseudo-label stage one column per
    scoring (the reference's where scored, ours), per segmenter one column (the scorings coincide)."""
    titles = {**STAGE_TITLES, "segmentation": network_name(metrics.get("segmentation") or {})}
    columns = []  # (header, Score)
    for stage in (s for s in STAGES if s in metrics):
        scores, _ = scores_of(stage, metrics[stage])
        if stage == "segmentation":
            score = scores["ours"]
            columns.append((f"{titles[stage]} ({score.split}), either scoring (no ignored pixels)", score))
            continue
        for scoring in ("reference", "ours"):
            if scoring in scores:
                score = scores[scoring]
                columns.append((f"{titles[stage]} ({score.split}), {SCORING_NAMES[scoring]}", score))
    header = ["class"] + [c[0] for c in columns]
    cells = [[name] + [pct(c[1].per_class_iou.get(name)) for c in columns] for name in class_names]
    cells.append(["mIoU"] + [pct(c[1].miou) for c in columns])
    cells.append(["pixel accuracy"] + [pct(c[1].pixel_accuracy) for c in columns])
    cells.append(["ignored (%)"] + ["–" if c[1].ignored is None else pct(c[1].ignored) for c in columns])
    cells.append(["images"] + ["–" if c[1].num_images is None else str(c[1].num_images) for c in columns])
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
    base_refined = find(baseline, "refined") if baseline and baseline != main else None
    if cam is not None or refined is not None:
        first = cam or refined
        parts = []
        if cam is not None:
            text = f"{pct(cam.miou)}% from the {cam.label} maps"
            if base is not None and base.lead == cam.lead:
                text += f" ({base.label}: {pct(base.miou)}%)"
            parts.append(text)
        if refined is not None:
            text = f"{pct(refined.miou)}% after refinement"
            if base_refined is not None and base_refined.lead == refined.lead:
                text += f" ({base_refined.label}: {pct(base_refined.miou)}%)"
            parts.append(text)
        count = f" ({first.num_images} images)" if first.num_images is not None else ""
        scoring = SCORING_NAMES[first.lead]
        lines.append(f"Pseudo labels scored on {first.split}{count}, {scoring}: mIoU " + ", ".join(parts) + ".")
    if not lines:
        lines.append(f"No metrics of the main experiment {main!r} yet.")
    return [f"- {line}" for line in lines]


def comparison_note(rows: list[Row]) -> str:
    """What the rows of the table score, for the kinds of rows it has."""
    notes = []
    if any(r.stage != "segmentation" for r in rows):
        notes.append(
            "Pseudo-label rows score the labels made from the maps against the ground truth of their "
            f"images (their quality as training targets), under two scorings: {SCORINGS['reference']}; "
            f"{SCORINGS['ours']}. A segmenter predicts every pixel, so its two columns hold the same figure."
        )
    if any(r.stage == "segmentation" for r in rows):
        notes.append("Segmenter rows (DeepLabV3+, DeepLab-V2) score the trained network on its evaluation split.")
    if any(r.reference for r in rows):
        notes.append(
            "weak / full: the mIoU of a segmenter trained on pseudo labels as a fraction of the same "
            "network's trained on ground-truth masks (the fully supervised reference)."
        )
    return " ".join(notes)


def chart_scoring(rows: list[Row]) -> str:
    """The scoring of the chart's pseudo-label bars (the lead scoring of the first pseudo-label row)."""
    return next((SCORING_NAMES[r.lead] for r in rows if r.stage != "segmentation"), "either scoring")


def chart_series(rows: list[Row]) -> list[tuple[str, dict]]:
    """(name, {class: IoU, "mIoU": mIoU}) per row; names made unique with the experiment."""
    names = [r.label for r in rows]
    series = []
    for row in rows:
        name = row.label if names.count(row.label) == 1 else f"{row.label} [{row.experiment}]"
        series.append((f"{name} ({row.split})", {**row.per_class_iou, "mIoU": row.miou}))
    return series
