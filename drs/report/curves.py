"""Training curves from the histories beside the models (drs.training.history): one figure per
experiment and training stage, the loss and learning rate over the steps, the validation mIoU where
the stage computed one, and the step of the checkpoint the later stages use, marked."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from drs.training.history import read_history
from drs.util.files import atomic_write_bytes

#: the training stages whose history a report draws, as a plan's "histories" keys name them
TRAINING_STAGES = ("classifier", "refiner", "segmenter")


def selected_checkpoint(segmentation: dict) -> dict | None:
    """{split, step} of the best-on-val checkpoint a segmentation.json scored, else None (its
    protocol's checkpoint reads "best on SPLIT (step N of ...)", drs.evaluation.protocol)."""
    protocol = segmentation.get("protocol") if isinstance(segmentation.get("protocol"), dict) else {}
    found = re.match(r"best on (\S+) \(step (\d+)", str(protocol.get("checkpoint", "")))
    if not protocol.get("selected_on_val") or not found:
        return None
    return {"split": found.group(1), "step": int(found.group(2))}


def checkpoint_step(rows: list[dict], selected: dict | None = None) -> tuple[int, str]:
    """(step, label) of the checkpoint used: the run's last step, or the step a best-on-val
    selection (a segmentation.json's ``selected_on_val``) chose."""
    if isinstance(selected, dict) and selected.get("step"):
        return int(selected["step"]), f"checkpoint used: best on {selected.get('split', 'val')}"
    return int(rows[-1]["step"]), "checkpoint used: the last"


def curve_png(rows: list[dict], title: str, checkpoint: tuple[int, str]) -> bytes:
    """The figure as PNG bytes; ``rows`` from :func:`drs.training.history.read_history`."""
    matplotlib.use("Agg")
    val = [(r["step"], 100 * r["val_miou"]) for r in rows if r.get("val_miou") is not None]
    figure = Figure(figsize=(7.5, 5.6 if val else 3.4), dpi=100)
    loss_axes = figure.add_subplot(2 if val else 1, 1, 1)
    steps = [r["step"] for r in rows]
    loss_axes.plot(steps, [r["loss"] for r in rows], color="tab:blue", linewidth=1.4, label="loss")
    loss_axes.set_ylabel("training loss", color="tab:blue")
    loss_axes.set_xlabel("optimizer step")
    lr_axes = loss_axes.twinx()
    lr_axes.plot(steps, [r["lr"] for r in rows], color="tab:gray", linewidth=1.0, linestyle="--", label="lr")
    lr_axes.set_ylabel("learning rate", color="tab:gray")
    step, label = checkpoint
    axes = [loss_axes]
    if val:
        val_axes = figure.add_subplot(2, 1, 2, sharex=loss_axes)
        val_axes.plot([s for s, _ in val], [m for _, m in val], marker="o", color="tab:green", linewidth=1.2)
        val_axes.set_ylabel("validation mIoU (%)")
        val_axes.set_xlabel("optimizer step")
        axes.append(val_axes)
    for ax in axes:
        ax.axvline(step, color="tab:red", linewidth=1.0, linestyle=":")
        ax.grid(color="0.9", linewidth=0.8)
    where = loss_axes.get_xaxis_transform()
    loss_axes.text(
        step, 1.0, f"{label} (step {step}) ", color="tab:red", fontsize=8, va="bottom", ha="right", transform=where
    )
    speed = [r["images_per_s"] for r in rows if r.get("images_per_s")]
    note = f"{len(rows)} rows, {steps[-1]:.0f} steps"
    if speed:
        note += f", median {sorted(speed)[len(speed) // 2]:.1f} images/s"
    figure.suptitle(f"{title}\n{note}", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_curves(histories: dict[tuple[str, str], str | Path], out_dir: Path, selected=None) -> dict[str, Path]:
    """``curves_<experiment>_<stage>.png`` in ``out_dir`` for each history file that exists and has
    rows (an imported model has none); ``selected``: {experiment: selected_on_val} of the segmenters
    scored on a best-on-val checkpoint. Returns the files by report kind."""
    selected = selected or {}
    written = {}
    for (experiment, stage), path in histories.items():
        rows = read_history(path)
        if not rows:
            continue
        pick = selected.get(experiment) if stage == "segmenter" else None
        png = curve_png(rows, f"{experiment}: {stage} training ({path})", checkpoint_step(rows, pick))
        written[f"training curve of {experiment} ({stage})"] = atomic_write_bytes(
            Path(out_dir) / f"curves_{experiment}_{stage}.png", png
        )
    return written
