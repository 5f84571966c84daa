"""The reference's periodic validation while DeepLabV3+ trains: the model best on val kept as ``best.pt``."""

from __future__ import annotations

import logging
from pathlib import Path

from drs.config.settings import SegmenterSettings
from drs.inference.segment import validation_miou
from drs.store.model_files import BEST_FILE, atomic_save, read_model_file

log = logging.getLogger("drs.segmenter")


class BestOnVal:
    """After every ``val_every`` steps: the model's mIoU on ``val_split``; the best so far is kept
    as ``OUT/best.pt`` (a model.pt whose record says ``selected_on_val``). A resumed run starts
    from the best.pt it left."""

    def __init__(self, model, record: dict, out_dir: Path, settings: SegmenterSettings, voc):
        self.model, self.record, self.settings, self.voc = model, record, settings, voc
        self.path = Path(out_dir) / BEST_FILE
        self.best = -1.0
        if self.path.exists():
            kept = read_model_file(self.path, ("segmenter",))
            if kept.get("settings") == record["settings"]:
                self.best = kept["selected_on_val"]["miou"]

    def __call__(self, step: int) -> dict | None:
        """Validate at every ``val_every``-th step; returns {"val_miou": mIoU} for the history then."""
        s = self.settings
        if step % s.val_every:
            return None
        miou = validation_miou(self.model, self.voc, s.val_protocol, s.val_crop_size)
        log.info("step %d: mIoU %.4f on %s (best so far %.4f)", step, miou, s.val_split, max(self.best, miou))
        if miou > self.best:
            self.best = miou
            chosen = {
                "split": s.val_split,
                "step": step,
                "every": s.val_every,
                "miou": miou,
                "protocol": s.val_protocol,
            }
            atomic_save({"state_dict": self.model.state_dict(), **self.record, "selected_on_val": chosen}, self.path)
        return {"val_miou": miou}
