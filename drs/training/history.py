"""A training run's history, written as it runs: ``history.csv`` beside the model.

One row every ``log_every`` optimizer steps, at the end of every epoch and at every validation:
the epoch (1-based), the step of the whole run (1-based), the mean loss and the images per second
since the previous row, the learning rate of the first parameter group, the seconds since the run
(or its resumption) started, and the validation mIoU where the stage computed one at that step.
Rows are appended and flushed as they come, so a running job's file can be read at any time.

Kept across a resume: a run resumed after epoch E keeps the rows of epochs 1..E (those the
checkpoint holds) and drops the rest, which the resumed run computes again, so the curve has no
step twice and none missing. A fresh run starts the file over.

With ``tensorboard`` (the config's ``logging.tensorboard``), the same scalars also go to
TensorBoard event files in ``OUT/tensorboard/``; without the ``tensorboard`` package that is
skipped with one warning saying how to install it.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

log = logging.getLogger("drs.history")

HISTORY_FILE = "history.csv"
COLUMNS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds", "val_miou")
TENSORBOARD_HINT = "pip install 'drs-wsss[tensorboard]' (or pip install tensorboard)"
TENSORBOARD = False  # set by a training stage's --tensorboard (the config's logging.tensorboard): use_tensorboard


def use_tensorboard(on: bool) -> None:
    """Also log every history row to TensorBoard in the runs of this process (``--tensorboard``)."""
    global TENSORBOARD
    TENSORBOARD = bool(on)


def read_history(path: str | Path) -> list[dict]:
    """The rows of a history file as dicts of floats (None for an empty cell); a missing file: []."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "step" not in reader.fieldnames:
            raise ValueError(f"{path}: not a training history (no 'step' column)")
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in reader]


def _tensorboard_writer(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
    except ImportError:
        log.warning("logging.tensorboard: the tensorboard package is not installed; skipped (%s)", TENSORBOARD_HINT)
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


class History:
    """The history of one run in ``out_dir`` (see the module docstring). ``resumed_epoch``: the
    epochs the resumed checkpoint holds, or None for a fresh run. ``enabled``: False in every
    process but rank 0 under torchrun (they write nothing)."""

    def __init__(self, out_dir: str | Path, resumed_epoch: int | None, tensorboard: bool = False, enabled=True):
        self.path = Path(out_dir) / HISTORY_FILE
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resumed_epoch is not None:
            try:
                kept = [r for r in read_history(self.path) if r["epoch"] is not None and r["epoch"] <= resumed_epoch]
            except ValueError as err:
                log.warning("%s; starting it over", err)
        tmp = self.path.with_name(f".{self.path.name}.partial")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for row in kept:
                w.writerow([_cell(k, row.get(k)) for k in COLUMNS])
        tmp.replace(self.path)
        if tensorboard:
            self.writer = _tensorboard_writer(Path(out_dir))

    def add(self, **row) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_cell(k, row.get(k)) for k in COLUMNS])
        if self.writer is not None:
            step = int(row["step"])
            for key in ("loss", "lr", "images_per_s", "val_miou"):
                if row.get(key) is not None:
                    self.writer.add_scalar(f"train/{key}", row[key], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key in ("epoch", "step"):
        return str(int(value))
    return f"{float(value):.6g}"
