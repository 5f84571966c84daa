"""DRS against the CAM baseline at every stage, each comparison under one named scoring.

The question a reader brings to a run, "does DRS beat CAM?", has an answer per stage: the pseudo
labels from the classifier's maps, those from the refined maps (each under the reference's scoring
and under ours, :data:`drs.report.tables.SCORINGS`), and the segmenter trained on each method's
pseudo labels (without and with the dense CRF; a segmenter predicts every pixel, so the two
scorings coincide there). :func:`verdict` lists the comparisons the metrics allow, straight from the
metrics files; :func:`verdict_line` states the end-to-end one (the segmenter's) in a sentence.
"""

from __future__ import annotations

from drs.report.render import pct
from drs.report.tables import SCORING_NAMES, STAGE_TITLES, STAGES, network_name, scores_of

VERDICT_HEADER = ["stage", "scored on", "scoring", "baseline (%)", "main (%)", "main - baseline (points)", "ahead"]
VERDICT_ALIGN = ["l", "l", "l", "r", "r", "r", "l"]


def _protocol(metrics: dict) -> str:
    p = metrics.get("protocol") if isinstance(metrics.get("protocol"), dict) else {}
    parts = [f"protocol {p['name']}" if p.get("name") else None]
    if p.get("checkpoint"):
        parts.append(f"{p['checkpoint']} checkpoint")
    return ", ".join(x for x in parts if x)


def _entry(stage, scoring, base, main, names, values, protocol="") -> dict:
    difference = values[1] - values[0]
    ahead = "tie" if round(100 * difference, 1) == 0 else names[1] if difference > 0 else names[0]
    return {
        "stage": stage,
        "split": str(base["split"]),
        "num_images": base.get("num_images"),
        "scoring": scoring,
        "protocol": protocol,
        "baseline": {"method": names[0], "miou": values[0]},
        "main": {"method": names[1], "miou": values[1]},
        "difference": difference,
        "ahead": ahead,
    }


def verdict(metrics: dict, main: str | None, baseline: str | None, labels: dict | None = None) -> list[dict]:
    """The comparisons of ``main`` against ``baseline`` that ``metrics`` ({(experiment, stage):
    values}) allows, in stage order; empty without a baseline. Each entry: stage, split,
    num_images, scoring (a key of SCORING_NAMES, or "either" / "either, dense CRF" for a segmenter),
    protocol, baseline and main ({method, miou}), difference (main - baseline) and ahead (a
    method's name, or "tie" when the two agree to 0.1 point)."""
    labels = labels or {}
    if not baseline or not main or baseline == main:
        return []
    names = (labels.get(baseline, baseline), labels.get(main, main))
    entries = []
    for stage in STAGES:
        base, ours = metrics.get((baseline, stage)), metrics.get((main, stage))
        if base is None or ours is None:
            continue
        if stage == "segmentation":
            title = f"{network_name(ours)} on the pseudo labels"
            protocol = _protocol(ours)
            entries.append(
                _entry(title, "either", base, ours, names, (float(base["miou"]), float(ours["miou"])), protocol)
            )
            crf = base.get("crf"), ours.get("crf")
            if all(isinstance(c, dict) and "miou" in c for c in crf):
                values = (float(crf[0]["miou"]), float(crf[1]["miou"]))
                entries.append(_entry(title, "either, dense CRF", base, ours, names, values, protocol))
            continue
        base_scores, _ = scores_of(stage, base)
        main_scores, _ = scores_of(stage, ours)
        for scoring in ("reference", "ours"):
            if scoring in base_scores and scoring in main_scores:
                b, m = base_scores[scoring], main_scores[scoring]
                title = f"pseudo labels from the {STAGE_TITLES[stage]}"
                scored = {"split": b.split, "num_images": b.num_images}
                entries.append(_entry(title, scoring, scored, ours, names, (b.miou, m.miou)))
    return entries


def scoring_text(entry: dict) -> str:
    scoring = entry["scoring"]
    if scoring.startswith("either"):
        return "no ignored pixels (both scorings)" + (", dense CRF" if "CRF" in scoring else ", no CRF")
    return SCORING_NAMES[scoring]


def verdict_cells(entries: list[dict]) -> list[list[str]]:
    rows = []
    for e in entries:
        where = f"{e['split']}" + (f" ({e['num_images']} images)" if e.get("num_images") is not None else "")
        if e["protocol"]:
            where += f", {e['protocol']}"
        rows.append(
            [
                e["stage"],
                where,
                scoring_text(e),
                f"{e['baseline']['method']}: {pct(e['baseline']['miou'])}",
                f"{e['main']['method']}: {pct(e['main']['miou'])}",
                f"{100 * e['difference']:+.1f}",
                e["ahead"],
            ]
        )
    return rows


def verdict_line(entries: list[dict]) -> str | None:
    """The end-to-end verdict as a sentence: the segmenter's comparison (without the CRF, with it in
    brackets), else the last pseudo-label comparison under the reference's scoring; None if none."""
    seg = next((e for e in entries if e["scoring"] == "either"), None)
    crf = next((e for e in entries if e["scoring"] == "either, dense CRF"), None)
    chosen = seg or next((e for e in reversed(entries) if e["scoring"] == "reference"), None)
    chosen = chosen or (entries[-1] if entries else None)
    if chosen is None:
        return None
    base, main = chosen["baseline"], chosen["main"]
    where = f"{chosen['split']}" + (f", {chosen['num_images']} images" if chosen.get("num_images") is not None else "")
    if chosen["protocol"]:
        where += f", {chosen['protocol']}"
    where += f", {scoring_text(chosen)}"
    if chosen["ahead"] == "tie":
        outcome = "a tie (within 0.1 point)"
    else:
        outcome = f"{chosen['ahead']} ahead by {abs(100 * chosen['difference']):.1f} points"
    text = (
        f"Verdict, {main['method']} against {base['method']} at the {'segmenter' if seg else 'pseudo labels'}: "
        f"{chosen['stage']}, {main['method']} {pct(main['miou'])}% against {base['method']} "
        f"{pct(base['miou'])}% mIoU ({where}): {outcome}"
    )
    if seg and crf:
        text += f"; with the dense CRF {pct(crf['main']['miou'])}% against {pct(crf['baseline']['miou'])}%"
    return text + "."
