"""`drs report`: the results of a run as tables, a chart, pictures and a markdown summary.

Inputs are the metrics files of the stages (``--metrics EXP:STAGE=PATH``, STAGE one of cam, refined,
segmentation), plus, for the pictures, map stores, a pseudo-label folder and a segmenter checkpoint.
It writes into ``--out-dir``:

- ``comparison.html``: one row per metrics file, grouped by stage: pseudo labels from the
  classifier's maps (CAM, DRS), from the refined maps, then DeepLabV3+ trained on pseudo labels and
  fully supervised, with the split, the number of images, mIoU, pixel accuracy and, for DeepLabV3+
  trained on pseudo labels, its mIoU as a fraction of the fully supervised model's (weak / full);
- ``per_class_iou.png``: grouped bars, one group per class, one bar per row of that table;
- ``experiment_<exp>.html``: per experiment, the per-class IoU of each stage it has;
- ``strips.png`` (with ``--dataset``): for a few training images, image | ground truth | each map
  store as a heat overlay | pseudo label | the segmenter's prediction, with each map's part /
  rest-of-object / background coverage under its column (from the metrics JSON that scored its store)
  and a colour legend;

and the markdown ``--summary`` with the headline, the same tables and the paths of these files.
``drs report --headline SUMMARY`` prints a summary's headline (the Makefile does, after a run).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from drs.errors import UserError
from drs.fileio import atomic_write_bytes, atomic_write_text, json_object

STAGES = ("cam", "refined", "segmentation")
REQUIRED_KEYS = ("miou", "pixel_accuracy", "per_class_iou", "num_images", "split")
STAGE_TITLES = {
    "cam": "classifier maps",
    "refined": "refined maps",
    "segmentation": "DeepLabV3+",
}
HEADLINE = "## Headline"


# -- metrics -------------------------------------------------------------------------------------
def _fraction(value, path: Path, key: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise UserError(f"{path}: {key} must be a number in [0, 1], got {value!r}")
    return float(value)


def load_metrics(path: str | Path) -> dict:
    """A metrics JSON file, checked for the keys the report reads; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: metrics file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read metrics file ({err.strerror})") from None
    data = json_object(text, str(path), "a JSON object of metrics")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}; a metrics file holds {', '.join(REQUIRED_KEYS)}")
    _fraction(data["miou"], path, "miou")
    _fraction(data["pixel_accuracy"], path, "pixel_accuracy")
    per_class = data["per_class_iou"]
    if not isinstance(per_class, dict) or not per_class:
        raise UserError(f"{path}: per_class_iou must map class names to IoU values")
    for name, value in per_class.items():
        _fraction(value, path, f"per_class_iou[{name!r}]")
    if (data.get("supervision") or "image") not in ("image", "full"):
        raise UserError(f"{path}: supervision must be 'image' or 'full', got {data['supervision']!r}")
    return data


# -- the comparison table ------------------------------------------------------------------------
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
    ratio: float | None = None  # weak / full val mIoU, DeepLabV3+ rows on pseudo labels
    reference: bool = False  # the fully supervised row the ratios divide by

    @property
    def group(self) -> int:
        if self.stage == "segmentation":
            return 3 if self.supervision == "full" else 2
        return STAGES.index(self.stage)


def _row(experiment: str, stage: str, metrics: dict, label: str) -> Row:
    supervision = str(metrics.get("supervision") or "image")
    if stage == "cam":
        name, scored = label, "pseudo labels from the classifier's maps"
    elif stage == "refined":
        name, scored = f"{label} + refinement", "pseudo labels from the refined maps"
    elif supervision == "full":
        name, scored = "DeepLabV3+ fully supervised", "DeepLabV3+ trained on ground-truth masks"
    else:
        name, scored = f"DeepLabV3+ on {label} pseudo labels", "DeepLabV3+ trained on pseudo labels"
    if stage == "segmentation" and metrics.get("multi_scale"):
        scored += " (multi-scale)"
    if (
        stage in ("cam", "refined")
        and metrics.get("headline_protocol") == "reference"
        and metrics.get("reference_protocol")
    ):
        # drs.protocol: the reference's scoring (no ignore step, every pixel counted) leads
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
    )


def comparison_rows(metrics: dict[tuple[str, str], dict], labels: dict[str, str] | None = None) -> list[Row]:
    """Rows for ``{(experiment, stage): metrics}``: grouped by stage (classifier maps, refined maps,
    DeepLabV3+ on pseudo labels, fully supervised), experiments in the order first given.

    ``labels`` names an experiment's method (e.g. drs -> "DRS"; default: the experiment's name). The
    first fully supervised DeepLabV3+ row is the reference of the weak / full ratios, taken for the
    DeepLabV3+ rows on pseudo labels scored on the same split.
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
    full = next((r for r in rows if r.group == 3), None)
    if full is not None:
        full.reference = True
        for row in rows:
            if row.group == 2 and row.split == full.split and full.miou > 0:
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


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


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
            _pct(r.miou),
            _pct(r.pixel_accuracy),
            _ratio(r),
        ]
        for r in rows
    ]


def experiment_table(
    experiment: str, metrics: dict[str, dict], class_names: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one experiment's per-class table: one column per stage it has."""
    stages = [s for s in STAGES if s in metrics]
    header = ["class"] + [f"{STAGE_TITLES[s]} ({metrics[s]['split']})" for s in stages]
    cells = [[name] + [_pct(metrics[s]["per_class_iou"].get(name)) for s in stages] for name in class_names]
    cells.append(["mIoU"] + [_pct(metrics[s]["miou"]) for s in stages])
    cells.append(["pixel accuracy"] + [_pct(metrics[s]["pixel_accuracy"]) for s in stages])
    cells.append(["images"] + [str(metrics[s].get("num_images", "–")) for s in stages])
    return header, cells


# -- headline ------------------------------------------------------------------------------------
def headline(rows: list[Row], main: str | None, baseline: str | None = None) -> list[str]:
    """Sentences with the main experiment's numbers, as markdown list items."""

    def find(experiment, stage, supervision="image"):
        return next(
            (r for r in rows if r.experiment == experiment and r.stage == stage and r.supervision == supervision), None
        )

    if main is None and rows:
        main = next((r.experiment for r in rows if r.supervision == "image"), rows[0].experiment)
    lines = []
    segmentation = find(main, "segmentation")
    full = next((r for r in rows if r.reference), None)
    if segmentation is not None:
        text = f"{segmentation.label}: {_pct(segmentation.miou)}% mIoU on {segmentation.split}"
        if segmentation.num_images is not None:
            text += f" ({segmentation.num_images} images)"
        if segmentation.ratio is not None:
            text += f", {_ratio(segmentation)} of the fully supervised model's {_pct(full.miou)}%"
        lines.append(text + ".")
    elif full is not None:
        lines.append(f"{full.label}: {_pct(full.miou)}% mIoU on {full.split}.")
    cam, refined = find(main, "cam"), find(main, "refined")
    base = find(baseline, "cam") if baseline and baseline != main else None
    if cam is not None or refined is not None:
        first = cam or refined
        parts = []
        if cam is not None:
            text = f"{_pct(cam.miou)}% from the {cam.label} maps"
            if base is not None:
                text += f" ({base.label}: {_pct(base.miou)}%)"
            parts.append(text)
        if refined is not None:
            parts.append(f"{_pct(refined.miou)}% after refinement")
        count = f" ({first.num_images} images)" if first.num_images is not None else ""
        lines.append(f"Pseudo labels scored on {first.split}{count}: mIoU " + ", ".join(parts) + ".")
    if not lines:
        lines.append(f"No metrics of the main experiment {main!r} yet.")
    return [f"- {line}" for line in lines]


# -- rendering -----------------------------------------------------------------------------------
def markdown_table(header: list[str], cells: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(header)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.2em; color: #1f2328; font-size: 14px; }
h1 { font-size: 1.35em; margin: 0 0 .5em; }
p, ul { max-width: 60em; line-height: 1.45; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { padding: .35em .75em; border-bottom: 1px solid #d8dee4; }
th { background: #f3f5f7; text-align: left; font-weight: 600; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
tr.sep td { border-top: 2px solid #8c959f; }
tr.ref td { background: #f6f8fa; }
.note { color: #57606a; font-size: .92em; }
"""


def html_table(
    header: list[str], cells: list[list[str]], align: list[str] | None = None, separators=(), classes=None
) -> str:
    align = align or ["l"] * len(header)
    classes = classes or {}
    out = ["<table>", "<thead><tr>"]
    out += [f'<th class="{a}">{html.escape(h)}</th>' for h, a in zip(header, align)]
    out.append("</tr></thead><tbody>")
    for n, row in enumerate(cells):
        css = " ".join(c for c in (("sep" if n in separators else ""), classes.get(n, "")) if c)
        out.append(f'<tr class="{css}">' if css else "<tr>")
        out += [f'<td class="{a}">{html.escape(str(c))}</td>' for c, a in zip(row, align)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def html_page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _markdown_inline(text: str) -> str:
    """The few markdown marks the headline uses, as HTML."""
    return html.escape(text.removeprefix("- "))


def comparison_note(rows: list[Row]) -> str:
    """What the rows of the table score, for the kinds of rows it has."""
    notes = []
    if any(r.stage != "segmentation" for r in rows):
        notes.append(
            "Pseudo-label rows score the labels made from the maps against the ground truth of their "
            "images (their quality as training targets)."
        )
    if any(r.stage == "segmentation" for r in rows):
        notes.append("DeepLabV3+ rows score the trained segmenter on its evaluation split.")
    if any(r.reference for r in rows):
        notes.append(
            "weak / full: the mIoU of DeepLabV3+ trained on pseudo labels as a fraction of the same "
            "network's trained on ground-truth masks (the fully supervised reference)."
        )
    return " ".join(notes)


def comparison_html(rows: list[Row], lines: list[str], title: str, protocols: list[str] = ()) -> str:
    separators = {n for n in range(1, len(rows)) if rows[n].group != rows[n - 1].group}
    classes = {n: "ref" for n, r in enumerate(rows) if r.reference}
    body = "<ul>" + "".join(f"<li>{_markdown_inline(line)}</li>" for line in lines) + "</ul>\n"
    body += html_table(COMPARISON_HEADER, comparison_cells(rows), COMPARISON_ALIGN, separators, classes)
    body += f'\n<p class="note">{html.escape(comparison_note(rows))}</p>'
    if protocols:  # how each DeepLabV3+ figure was measured (drs.segmentation_protocol)
        body += '\n<ul class="note">' + "".join(f"<li>{_markdown_inline(line)}</li>" for line in protocols) + "</ul>"
    return html_page(title, body)


def chart_series(rows: list[Row]) -> list[tuple[str, dict]]:
    """(name, {class: IoU, "mIoU": mIoU}) per row; names made unique with the experiment."""
    names = [r.label for r in rows]
    series = []
    for row in rows:
        name = row.label if names.count(row.label) == 1 else f"{row.label} [{row.experiment}]"
        series.append((f"{name} ({row.split})", {**row.per_class_iou, "mIoU": row.miou}))
    return series


# -- the whole report ----------------------------------------------------------------------------
def write_report(
    metrics_paths: dict[tuple[str, str], str | Path],
    out_dir: str | Path,
    summary: str | Path | None = None,
    *,
    labels: dict[str, str] | None = None,
    main: str | None = None,
    baseline: str | None = None,
    strips=None,
    title: str = "DRS results",
) -> dict[str, Path]:
    """Write the report's files (see the module docstring); returns them by kind.

    ``strips``: None, or a zero-argument callable returning the strip picture (an RGB array).
    """
    from drs.viz import per_class_chart, png_bytes

    if not metrics_paths:
        raise UserError("no metrics given: pass --metrics EXP:STAGE=PATH for at least one stage")
    out_dir = Path(out_dir)
    metrics = {key: load_metrics(path) for key, path in metrics_paths.items()}
    labels = labels or {}
    rows = comparison_rows(metrics, labels)
    names = class_order(list(metrics.values()))
    lines = headline(rows, main, baseline)
    from drs.segmentation_protocol import protocol_lines

    protocols = protocol_lines(metrics)
    written: dict[str, Path] = {}

    written["comparison table"] = out_dir / "comparison.html"
    atomic_write_text(written["comparison table"], comparison_html(rows, lines, title, protocols))
    written["per-class IoU chart"] = atomic_write_bytes(
        out_dir / "per_class_iou.png", per_class_chart(chart_series(rows), names, "Per-class IoU")
    )
    by_experiment: dict[str, dict[str, dict]] = {}
    for (experiment, stage), values in metrics.items():
        by_experiment.setdefault(experiment, {})[stage] = values
    experiment_md = []
    for experiment, stages in by_experiment.items():
        header, cells = experiment_table(experiment, stages, names)
        align = ["l"] + ["r"] * (len(header) - 1)
        label = labels.get(experiment)
        heading = f"{experiment} ({label})" if label and label != experiment else experiment
        path = out_dir / f"experiment_{experiment}.html"
        body = html_table(header, cells, align, separators={len(names)})
        body += f'\n<p class="note">IoU per class (%), from {", ".join(str(metrics_paths[(experiment, s)]) for s in STAGES if s in stages)}.</p>'
        atomic_write_text(path, html_page(f"Experiment {heading}", body))
        written[f"per-class table of {experiment}"] = path
        experiment_md += [f"### {heading}", "", markdown_table(header, cells, align)]
    if strips is not None:
        written["picture strips"] = atomic_write_bytes(out_dir / "strips.png", png_bytes(strips()))

    if summary is not None:
        md = [
            f"# {title}",
            "",
            HEADLINE,
            "",
            *lines,
            "",
            "## Comparison",
            "",
            markdown_table(COMPARISON_HEADER, comparison_cells(rows), COMPARISON_ALIGN),
            comparison_note(rows),
            "",
            *protocols,
            *([""] if protocols else []),
            "## Per experiment (IoU per class, %)",
            "",
            *experiment_md,
            "## Files",
            "",
            *[f"- {kind}: `{path}`" for kind, path in written.items()],
            "- all of these with captions in one HTML file: `snakemake --report FILE.html` after the run "
            "(README, section The report)",
            "",
        ]
        written["summary"] = atomic_write_text(summary, "\n".join(md))
    return written


def headline_section(summary: str | Path) -> str:
    """The headline section of a summary written by :func:`write_report`."""
    path = Path(summary)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read summary ({err.strerror})") from None
    lines = text.splitlines()
    if HEADLINE not in lines:
        raise UserError(f"{path}: no '{HEADLINE}' section; is it a summary written by drs report?")
    start = lines.index(HEADLINE) + 1
    end = next((n for n in range(start, len(lines)) if lines[n].startswith("## ")), len(lines))
    return "\n".join(line for line in lines[start:end] if line.strip())


# -- command line --------------------------------------------------------------------------------
def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="tables, a per-class chart, picture strips and a markdown summary of a run",
        description=__doc__,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--plan",
        metavar="JSON",
        help="everything the report covers as one JSON object (what the workflow passes, from drs.plan.report_plan): metrics, labels, main, baseline, maps, pseudo_labels, segmenter, dataset, split; replaces the options from --metrics to --split",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="EXP:STAGE=PATH",
        help="a metrics JSON file (STAGE: cam, refined, segmentation)",
    )
    p.add_argument(
        "--label",
        nargs="*",
        default=[],
        metavar="EXP=TEXT",
        help="an experiment's method name in the tables (e.g. drs=DRS)",
    )
    p.add_argument(
        "--main", help="the experiment the headline is about (default: the first weakly supervised one given)"
    )
    p.add_argument("--baseline", help="the CAM baseline experiment the headline compares with")
    p.add_argument(
        "--strip-maps", nargs="*", default=[], metavar="TITLE=STORE", help="a map store drawn as a column of the strips"
    )
    p.add_argument("--pseudo-labels", metavar="DIR", help="pseudo-label folder drawn as a column of the strips")
    p.add_argument(
        "--segmenter", metavar="CKPT", help="DeepLabV3+ checkpoint whose predictions are a column of the strips"
    )
    p.add_argument(
        "--dataset", metavar="ROOT", help="dataset folder of the strip images (strips are drawn only with it)"
    )
    p.add_argument("--split", help="split of the strip images (default: train)")
    p.add_argument("--num-strip-images", type=int, default=6, help="images in the strips (default: 6)")
    p.add_argument("--strip-ids", nargs="*", default=[], help="draw these image ids instead of the automatic choice")
    p.add_argument("--panel-size", type=int, default=160, help="pixels per strip panel (default: 160)")
    p.add_argument("--out-dir", help="folder for the report files")
    p.add_argument("--summary", help="markdown summary to write")
    p.add_argument("--title", default="DRS results", help="title of the summary and the tables")
    p.add_argument(
        "--headline", metavar="SUMMARY", help="only print the headline of a summary written before, and exit"
    )
    p.set_defaults(func=_run)


def _pairs(values: list[str], option: str, sep: str = "=") -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, found, rest = value.partition(sep)
        if not found or not name or not rest:
            raise UserError(f"{option}: expected NAME{sep}VALUE, got {value!r}")
        out.append((name, rest))
    return out


def parse_metrics(values: list[str]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for key, path in _pairs(values, "--metrics"):
        experiment, found, stage = key.partition(":")
        if not found or not experiment or stage not in STAGES:
            raise UserError(
                f"--metrics: expected EXP:STAGE=PATH with STAGE one of {', '.join(STAGES)}, got {key}={path}"
            )
        if (experiment, stage) in out:
            raise UserError(f"--metrics: {experiment}:{stage} given twice")
        out[(experiment, stage)] = path
    return out


def load_predictor(checkpoint: str | Path):
    """The segmenter of a checkpoint as a callable image -> labels (drs.evaluate.Predictor)."""
    if not Path(checkpoint).exists():
        raise UserError(f"{checkpoint}: segmenter checkpoint not found")
    try:
        from drs.evaluate import Predictor
    except ImportError as err:
        raise UserError(f"--segmenter needs drs.evaluate.Predictor, which this drs lacks ({err})") from None
    return Predictor(checkpoint, device=None)


def store_coverage(metrics_paths) -> dict[Path, dict]:
    """Resolved map-store path -> its coverage section, from the metrics JSON files given: eval-maps'
    (``store`` and ``coverage`` at the top) and score-labels' (the same in ``reference_protocol``).
    A file without them (e.g. segmentation.json) or unreadable is skipped: coverage is optional."""
    found: dict[Path, dict] = {}
    for path in metrics_paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for section in (data, data.get("reference_protocol")):
            if not isinstance(section, dict):
                continue
            store = section.get("store") or (section.get("protocol") or {}).get("store")
            coverage = section.get("coverage")
            if isinstance(store, str) and isinstance(coverage, dict) and coverage:
                found.setdefault(Path(store).resolve(), coverage)
    return found


def make_strips(dataset_root, split, maps, pseudo_labels, segmenter, ids=(), count=6, box=160, metrics=()):
    """A callable drawing the strips of a dataset split (None without ``dataset_root``): the map
    stores ``maps`` (column title -> store), the pseudo-label folder and the segmenter's
    predictions, each a column when given; a store's coverage, when one of the ``metrics`` files
    scored it, is printed under its column."""
    if not dataset_root:
        if maps or pseudo_labels or segmenter:
            raise UserError("--strip-maps, --pseudo-labels and --segmenter draw strips, which need --dataset ROOT")
        return None

    def draw():
        from drs.data.voc import VOCDataset
        from drs.maps import MapStore
        from drs.viz import StripSources, pick_strip_ids, strip_figure

        dataset = VOCDataset(dataset_root, split)
        if pseudo_labels and not Path(pseudo_labels).is_dir():
            raise UserError(f"{pseudo_labels}: pseudo-label folder not found")
        stores = {}
        try:
            known = store_coverage(metrics)
            coverage = {}
            for title, path in maps.items():
                stores[title] = MapStore(path)
                if Path(path).resolve() in known:
                    coverage[title] = known[Path(path).resolve()]
            predictor = load_predictor(segmenter) if segmenter else None
            sources = StripSources(
                maps=stores,
                pseudo_labels=Path(pseudo_labels) if pseudo_labels else None,
                predictor=predictor,
                coverage=coverage,
            )
            chosen = list(ids) or pick_strip_ids(dataset, sources, count)
            return strip_figure(dataset, chosen, sources, box=box)
        finally:
            for store in stores.values():
                store.close()

    return draw


# the keys of a --plan object, with the option each replaces
PLAN_KEYS = {
    "metrics": "--metrics",
    "labels": "--label",
    "main": "--main",
    "baseline": "--baseline",
    "maps": "--strip-maps",
    "pseudo_labels": "--pseudo-labels",
    "segmenter": "--segmenter",
    "dataset": "--dataset",
    "split": "--split",
}


def parse_plan(text: str) -> dict:
    """A --plan object: every key of PLAN_KEYS, metrics keyed by (experiment, stage)."""
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--plan: not valid JSON ({err})") from None
    if not isinstance(plan, dict):
        raise UserError("--plan: expected a JSON object")
    unknown = sorted(set(plan) - set(PLAN_KEYS))
    missing = [key for key in PLAN_KEYS if key not in plan]
    if unknown or missing:
        raise UserError(f"--plan: unknown key(s) {unknown}, missing key(s) {missing}; expected {', '.join(PLAN_KEYS)}")
    for key in ("metrics", "labels", "maps"):
        if not isinstance(plan[key], dict):
            raise UserError(f"--plan: '{key}' must be an object")
    plan["metrics"] = parse_metrics([f"{k}={v}" for k, v in plan["metrics"].items()])
    return plan


def _options_plan(args) -> dict:
    """The plan the individual options give."""
    return {
        "metrics": parse_metrics(args.metrics),
        "labels": dict(_pairs(args.label, "--label")),
        "main": args.main,
        "baseline": args.baseline,
        "maps": dict(_pairs(args.strip_maps, "--strip-maps")),
        "pseudo_labels": args.pseudo_labels,
        "segmenter": args.segmenter,
        "dataset": args.dataset,
        "split": args.split or "train",
    }


def _run(args) -> int:
    if args.headline:
        print(headline_section(args.headline))
        return 0
    if not args.out_dir:
        raise UserError("--out-dir is required (or --headline SUMMARY to print a summary's headline)")
    if args.plan:
        values = (
            args.metrics,
            args.label,
            args.main,
            args.baseline,
            args.strip_maps,
            args.pseudo_labels,
            args.segmenter,
            args.dataset,
            args.split,
        )
        given = [option for option, value in zip(PLAN_KEYS.values(), values) if value]
        if given:
            raise UserError(f"--plan replaces {', '.join(given)}: give one or the other")
        plan = parse_plan(args.plan)
    else:
        plan = _options_plan(args)
    strips = make_strips(
        plan["dataset"],
        plan["split"],
        plan["maps"],
        plan["pseudo_labels"],
        plan["segmenter"],
        args.strip_ids,
        args.num_strip_images,
        args.panel_size,
        plan["metrics"].values(),
    )
    written = write_report(
        plan["metrics"],
        args.out_dir,
        args.summary,
        labels=plan["labels"],
        main=plan["main"],
        baseline=plan["baseline"],
        strips=strips,
        title=args.title,
    )
    for path in written.values():
        print(f"wrote {path}")
    return 0
