"""Writing a run's report: the tables, charts, picture strips, curves and markdown summary that
``drs report`` (drs.stages.report, whose docstring lists the files) puts into ``--out-dir``."""

from __future__ import annotations

import html
import json
from pathlib import Path

from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.inference.segment import Predictor
from drs.report.curves import TRAINING_STAGES, selected_checkpoint, write_curves
from drs.report.figures import StripSources, per_class_chart, pick_strip_ids, png_bytes, strip_figure
from drs.report.inputs import load_metrics
from drs.report.protocols import REPRODUCTION_ALIGN, REPRODUCTION_HEADER, protocol_lines, reproduction_cells
from drs.report.render import html_page, html_table, markdown_inline, markdown_table, pct
from drs.report.sweep_figure import draw_sweeps
from drs.report.tables import (
    COMPARISON_ALIGN,
    COMPARISON_HEADER,
    STAGES,
    Row,
    chart_scoring,
    chart_series,
    class_order,
    comparison_cells,
    comparison_note,
    comparison_rows,
    experiment_table,
    headline,
)
from drs.report.verdict import VERDICT_ALIGN, VERDICT_HEADER, verdict, verdict_cells, verdict_line
from drs.store.reader import MapStore
from drs.util.argtypes import name_value_pairs
from drs.util.files import atomic_write_bytes, atomic_write_text

HEADLINE = "## Headline"
VERDICT = "Main against baseline, stage by stage (mIoU, one scoring per line)"
REPRODUCTION = "Reproduction: our segmenter figures beside the published ones, each with its protocol"


def comparison_html(
    rows: list[Row],
    lines: list[str],
    title: str,
    protocols: list[str] = (),
    reproduction: list[list[str]] = (),
    comparisons: list[dict] = (),
) -> str:
    separators = {n for n in range(1, len(rows)) if rows[n].group != rows[n - 1].group}
    classes = {n: "ref" for n, r in enumerate(rows) if r.reference}
    body = "<ul>" + "".join(f"<li>{markdown_inline(line)}</li>" for line in lines) + "</ul>\n"
    body += html_table(COMPARISON_HEADER, comparison_cells(rows), COMPARISON_ALIGN, separators, classes)
    body += f'\n<p class="note">{html.escape(comparison_note(rows))}</p>'
    if comparisons:  # DRS against CAM at every stage, one scoring per line (drs.report.verdict)
        body += f"\n<h2>{html.escape(VERDICT)}</h2>\n"
        body += html_table(VERDICT_HEADER, verdict_cells(comparisons), VERDICT_ALIGN)
    if protocols:  # how each segmenter figure was measured (drs.report.protocols)
        body += '\n<ul class="note">' + "".join(f"<li>{markdown_inline(line)}</li>" for line in protocols) + "</ul>"
    if reproduction:  # ours beside the authors' and the published figures, each with its protocol
        body += f"\n<h2>{html.escape(REPRODUCTION)}</h2>\n"
        body += html_table(
            REPRODUCTION_HEADER, [[c.replace("`", "") for c in r] for r in reproduction], REPRODUCTION_ALIGN
        )
    return html_page(title, body)


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
    published=(),
    histories=None,
    sweeps=None,
) -> dict[str, Path]:
    """Write the report's files (see the module docstring); returns them by kind.

    ``strips``: None, or a zero-argument callable returning the strip picture (an RGB array);
    ``published``: figures of others to set beside ours (the config's ``report.published``);
    ``histories``: {(experiment, training stage): history.csv} drawn as training curves;
    ``sweeps``: {method: sweep.json of drs sweep-labels} drawn as threshold curves on shared axes.
    """
    if not metrics_paths:
        raise UserError("no metrics given: pass --metrics EXP:STAGE=PATH for at least one stage")
    out_dir = Path(out_dir)
    metrics = {key: load_metrics(path) for key, path in metrics_paths.items()}
    labels = labels or {}
    rows = comparison_rows(metrics, labels)
    names = class_order(list(metrics.values()))
    lines = headline(rows, main, baseline)
    comparisons = verdict(metrics, main, baseline, labels)
    end_to_end = verdict_line(comparisons)
    if end_to_end:
        lines.append(f"- {end_to_end}")

    protocols = protocol_lines(metrics)
    reproduction = reproduction_cells(metrics, published)
    written: dict[str, Path] = {}

    written["comparison table"] = out_dir / "comparison.html"
    page = comparison_html(rows, lines, title, protocols, reproduction, comparisons)
    atomic_write_text(written["comparison table"], page)
    written["per-class IoU chart"] = atomic_write_bytes(
        out_dir / "per_class_iou.png",
        per_class_chart(chart_series(rows), names, f"Per-class IoU (pseudo labels: {chart_scoring(rows)})"),
    )
    if comparisons:
        record = {"main": main, "baseline": baseline, "line": end_to_end, "comparisons": comparisons}
        record["sources"] = {f"{e}:{s}": str(p) for (e, s), p in metrics_paths.items() if e in (main, baseline)}
        written["verdict"] = atomic_write_text(out_dir / "verdict.json", json.dumps(record, indent=2) + "\n")
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
        sources = ", ".join(str(metrics_paths[(experiment, s)]) for s in STAGES if s in stages)
        body += f'\n<p class="note">IoU per class (%), from {sources}.</p>'
        atomic_write_text(path, html_page(f"Experiment {heading}", body))
        written[f"per-class table of {experiment}"] = path
        experiment_md += [f"### {heading}", "", markdown_table(header, cells, align)]
    selected = {e: selected_checkpoint(v) for (e, st), v in metrics.items() if st == "segmentation"}
    written.update(write_curves(histories or {}, out_dir, selected))
    threshold_lines = []
    if sweeps:
        loaded = {label: load_sweep(path) for label, path in sweeps.items()}
        written["threshold curves"] = draw_sweeps(loaded, out_dir / "threshold_curves.png")
        threshold_lines = sweep_lines(loaded)
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
            *(
                [f"## {VERDICT}", "", markdown_table(VERDICT_HEADER, verdict_cells(comparisons), VERDICT_ALIGN)]
                if comparisons
                else []
            ),
            *(
                [f"## {REPRODUCTION}", "", markdown_table(REPRODUCTION_HEADER, reproduction, REPRODUCTION_ALIGN)]
                if reproduction
                else []
            ),
            *(["## Threshold curves (drs sweep-labels)", "", *threshold_lines, ""] if threshold_lines else []),
            "## Per experiment (IoU per class, %)",
            "",
            *experiment_md,
            "## Files",
            "",
            *[f"- {kind}: `{path}`" for kind, path in written.items()],
            "- all of these with captions in one HTML file: `snakemake --report FILE.html` after the run "
            "(docs/pipeline.md, section The report)",
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


def _stage_pairs(values: list[str], flag: str, stages, value: str) -> dict[tuple[str, str], str]:
    """``EXP:STAGE=VALUE`` pairs of ``flag`` (STAGE one of ``stages``, each pair once) as
    {(experiment, stage): value}."""
    out: dict[tuple[str, str], str] = {}
    for key, path in name_value_pairs(values, flag):
        experiment, found, stage = key.partition(":")
        if not found or not experiment or stage not in stages:
            raise UserError(
                f"{flag}: expected EXP:STAGE={value} with STAGE one of {', '.join(stages)}, got {key}={path}"
            )
        if (experiment, stage) in out:
            raise UserError(f"{flag}: {experiment}:{stage} given twice")
        out[(experiment, stage)] = path
    return out


def parse_metrics(values: list[str]) -> dict[tuple[str, str], str]:
    """``EXP:STAGE=PATH`` pairs (STAGE one of cam, refined, segmentation) as {(experiment, stage): path}."""
    return _stage_pairs(values, "--metrics", STAGES, "PATH")


def load_sweep(path: str | Path) -> dict:
    """A sweep.json of ``drs sweep-labels``; a UserError naming the file when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable sweep JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("sweeps"), dict):
        raise UserError(f"{path}: not a sweep of drs sweep-labels (no 'sweeps' object)")
    return data


def sweep_lines(sweeps: dict[str, dict]) -> list[str]:
    """One markdown line per method and threshold: the configured value and the best one, under each scoring."""
    lines = []
    for label, data in sweeps.items():
        for name, sweep in data["sweeps"].items():
            if not isinstance(sweep, dict) or "best" not in sweep:
                continue
            at = {p["value"]: p for p in sweep["points"]}.get(sweep["configured"], {})
            parts = []
            for scoring, best in sweep["best"].items():
                here = (at.get(scoring) or {}).get("miou")
                parts.append(
                    f"{scoring} scoring {pct(here)}% at the configured {sweep['configured']:g}, "
                    f"best {pct(best['miou'])}% at {best['value']:g}"
                )
            lines.append(f"- {label}, {name.replace('_', ' ')}: " + "; ".join(parts))
    return lines


def parse_histories(values: list[str]) -> dict[tuple[str, str], str]:
    """``EXP:STAGE=CSV`` pairs (STAGE one of the training stages) as {(experiment, stage): path}."""
    return _stage_pairs(values, "--history", TRAINING_STAGES, "CSV")


def load_predictor(checkpoint: str | Path):
    """The segmenter of a checkpoint as a callable image -> labels (drs.inference.segment.Predictor)."""
    if not Path(checkpoint).exists():
        raise UserError(f"{checkpoint}: segmenter checkpoint not found")
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
    "published": "--published",
    "histories": "--history",
    "sweeps": "--sweep",
}


PUBLISHED_KEYS = {"label", "split", "miou", "source", "protocol"}


def check_published(figures, where: str) -> list[dict]:
    """Published figures (the config's ``report.published``): a list of objects with at least
    label, split, miou, source and protocol (a UserError naming ``where`` otherwise)."""
    if not isinstance(figures, list) or not all(isinstance(f, dict) for f in figures):
        raise UserError(f"{where}: expected a list of objects")
    for n, fig in enumerate(figures):
        missing = sorted(PUBLISHED_KEYS - set(fig))
        if missing:
            raise UserError(f"{where}[{n}]: missing key(s) {missing}")
    return figures


def parse_plan(text: str) -> dict:
    """A --plan object: every key of PLAN_KEYS (published optional), metrics keyed by (experiment, stage)."""
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--plan: not valid JSON ({err})") from None
    if not isinstance(plan, dict):
        raise UserError("--plan: expected a JSON object")
    unknown = sorted(set(plan) - set(PLAN_KEYS))
    plan.setdefault("published", [])  # optional: no published figures
    plan.setdefault("histories", {})  # optional: no training curves
    plan.setdefault("sweeps", {})  # optional: no threshold curves
    missing = [key for key in PLAN_KEYS if key not in plan]
    if unknown or missing:
        raise UserError(f"--plan: unknown key(s) {unknown}, missing key(s) {missing}; expected {', '.join(PLAN_KEYS)}")
    for key in ("metrics", "labels", "maps"):
        if not isinstance(plan[key], dict):
            raise UserError(f"--plan: '{key}' must be an object")
    plan["published"] = check_published(plan["published"], "--plan: 'published'")
    for key in ("histories", "sweeps"):
        if not isinstance(plan[key], dict):
            raise UserError(f"--plan: '{key}' must be an object")
    plan["metrics"] = parse_metrics([f"{k}={v}" for k, v in plan["metrics"].items()])
    plan["histories"] = parse_histories([f"{k}={v}" for k, v in plan["histories"].items()])
    return plan
