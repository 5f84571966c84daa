"""Where a store's maps are: the share of each object's part, of its rest, and of the background they reach."""

from __future__ import annotations

import numpy as np


class Coverage:
    """Pixel counts pooled over the whole split."""

    def __init__(self):
        self.counts = {k: 0 for k in ("part", "part_hit", "rest", "rest_hit", "background", "background_hit")}
        self.sums = {"part": 0.0, "rest": 0.0}

    def add(self, classes, maps: np.ndarray, mask: np.ndarray, part: np.ndarray | None, alpha: float) -> None:
        on = maps >= alpha
        background = mask == 0
        self.counts["background"] += int(background.sum())
        if len(classes):
            self.counts["background_hit"] += int((on.any(axis=0) & background).sum())
        if part is None:
            return
        for k, c in enumerate(classes):
            part_px = part == c
            rest_px = (mask == c) & ~part_px
            self.counts["part"] += int(part_px.sum())
            self.counts["part_hit"] += int((on[k] & part_px).sum())
            self.counts["rest"] += int(rest_px.sum())
            self.counts["rest_hit"] += int((on[k] & rest_px).sum())
            self.sums["part"] += float(maps[k][part_px].sum())
            self.sums["rest"] += float(maps[k][rest_px].sum())

    def result(self) -> dict:
        c = self.counts

        def share(hit, total):
            return c[hit] / c[total] if c[total] else None

        out = {"background": share("background_hit", "background")}
        if c["part"]:
            out.update(
                part=share("part_hit", "part"),
                rest_of_object=share("rest_hit", "rest"),
                part_mean_score=self.sums["part"] / c["part"],
                rest_mean_score=self.sums["rest"] / c["rest"] if c["rest"] else None,
            )
        return out
