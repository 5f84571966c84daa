"""Pseudo labels from localization maps, the paper's way.

Object cues: maps below ``alpha`` set to 0. Background cue: 1 - saliency (or a constant threshold
when there is no saliency). Label: arg-max over (background, classes). Ignored (255): pixels where
more than two of those scores exceed ``conflict_score``, and pixels labelled background although
fully salient (saliency == 1).
"""

from __future__ import annotations

import numpy as np

IGNORE = 255


def pseudo_label(
    classes: np.ndarray,
    maps: np.ndarray,
    saliency: np.ndarray | None,
    alpha: float = 0.2,
    bg_threshold: float = 0.2,
    conflict_score: float = 0.9,
) -> np.ndarray:
    """Label map (H, W) uint8 from the maps (K, H, W) in [0, 1] of the image's classes (K,)."""
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[1:]
    cues = np.where(maps < alpha, 0.0, maps)
    background = (1.0 - saliency)[None] if saliency is not None else np.full((1, h, w), bg_threshold, np.float32)
    scores = np.concatenate([background.astype(np.float32), cues], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    label = lookup[scores.argmax(axis=0)]
    label[(scores > conflict_score).sum(axis=0) > 2] = IGNORE
    if saliency is not None:
        label[(saliency >= 1.0) & (label == 0)] = IGNORE
    return label
