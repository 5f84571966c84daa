"""The threshold curves of ``drs sweep-labels`` as one picture: mIoU over alpha and over the
saliency threshold, each method one colour, ours solid and the reference's scoring dashed, the
configured value a vertical line. Written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from drs.errors import UserError
from drs.labels.sweep import SCORINGS
from drs.util.files import atomic_write_bytes

#: the line style of each scoring
STYLES = {"ours": "-", "reference": "--"}
#: each panel: the sweep's key and its x-axis label
PANELS = (
    ("alpha", "background threshold alpha (object cues below it dropped)"),
    ("saliency_threshold", "saliency threshold (grey level, 0-255; grey above it is salient)"),
)


def _curve(sweep: dict, key: str, label: str) -> dict | None:
    """The sweep JSON's curve of ``key`` (None when it was skipped); UserError naming ``label`` when
    the object is not a sweep."""
    curves = sweep.get("sweeps") if isinstance(sweep, dict) else None
    if not isinstance(curves, dict) or key not in curves:
        raise UserError(f"sweep {label!r}: not a drs sweep-labels JSON object (no sweeps.{key})")
    curve = curves[key]
    if curve.get("skipped") or not curve.get("points"):
        return None
    return curve


def draw_sweeps(sweeps: dict[str, dict], out_png: Path) -> Path:
    """Draw ``sweeps`` (curve label, e.g. "CAM baseline" or "DRS" -> the JSON object of ``drs
    sweep-labels``) as one PNG with two panels, mIoU over alpha and over the saliency threshold;
    a panel no sweep has a curve for says so. Returns ``out_png``."""
    if not sweeps:
        raise UserError(f"{out_png}: no sweeps to draw")
    matplotlib.use("Agg")
    palette = matplotlib.colormaps["tab10"].colors
    figure = Figure(figsize=(11.0, 4.4), dpi=110)
    axes_pair = figure.subplots(1, 2, sharey=True)
    for axes, (key, xlabel) in zip(axes_pair, PANELS):
        configured = set()
        drawn = False
        for k, (label, sweep) in enumerate(sweeps.items()):
            curve = _curve(sweep, key, label)
            if curve is None:
                continue
            colour = palette[k % len(palette)]
            x = [p["value"] for p in curve["points"]]
            for scoring in SCORINGS:
                y = [100.0 * p[scoring]["miou"] for p in curve["points"]]
                axes.plot(x, y, STYLES[scoring], color=colour, linewidth=1.6, label=f"{label} ({scoring})")
                best = curve["best"][scoring]
                axes.plot([best["value"]], [100.0 * best["miou"]], "o", color=colour, markersize=4)
            configured.add(curve["configured"])
            drawn = True
        for j, value in enumerate(sorted(configured)):  # labels one below the other
            axes.axvline(value, color="0.45", linewidth=0.9, linestyle=":")
            axes.annotate(
                f"configured {value:g}",
                (value, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12 - 11 * j),
                textcoords="offset points",
                fontsize=8,
                color="0.35",
            )
        if not drawn:
            axes.text(0.5, 0.5, "not swept", ha="center", va="center", transform=axes.transAxes, color="0.4")
        axes.set_xlabel(xlabel, fontsize=9)
        axes.grid(color="0.9", linewidth=0.8)
        axes.set_axisbelow(True)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    axes_pair[0].set_ylabel("mIoU of the pseudo labels (%)")
    handles, labels = axes_pair[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes_pair[1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), frameon=False, fontsize=8.5)
    figure.suptitle(
        "Pseudo-label mIoU over the rule's thresholds (solid: ours, ignored pixels left out; dashed: the "
        "reference's, every pixel counted; dots: best)",
        fontsize=9.5,
    )
    figure.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 4), 1, 0.95))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return atomic_write_bytes(out_png, buffer.getvalue())
