"""The pseudo-label rule on arrays, the paper's way, and the reference's scoring label.

Object cues: maps below ``alpha`` set to 0. Background cue: 1 - saliency (or a constant threshold
when there is no saliency), where the grey saliency map is first binarised, as in the reference's
loaders (``utils/LoadData.py``, ``utils/transforms/transforms_refine.py``): grey > ``saliency_threshold``
(50 on the 0-255 scale) is salient (1), the rest 0; ``saliency_threshold=None`` keeps the grey values
as continuous saliency in [0, 1] (not the reference's rule; an explicit option). Label: arg-max over
(background, classes). Ignored (255): pixels where more than two of those scores exceed
``conflict_score``, and pixels labelled background although salient (saliency == 1).

The rule's settings are the config's ``pseudo_labels`` section
(:class:`drs.config.settings.PseudoLabelSettings`; its defaults are the schema's): pass it whole, or
override keys by name (``pseudo_label(classes, maps, saliency, alpha=0.3)``). :func:`reference_label`
is the label the reference's ``scripts/test_cls.py`` scores: the same arg-max without the ignore step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from drs.config.settings import PseudoLabelSettings
from drs.data.voc import IGNORE

#: the schema's defaults (the reference's rule: alpha 0.2, saliency binarised at grey > 50, ...)
DEFAULTS = PseudoLabelSettings()


def binarize_saliency(saliency: np.ndarray, threshold: float | None = DEFAULTS.saliency_threshold) -> np.ndarray:
    """Grey saliency in [0, 1] (grey / 255) -> 1.0 where grey > ``threshold`` (on 0-255), else 0.0;
    ``threshold=None`` returns the grey values unchanged (continuous saliency)."""
    saliency = np.asarray(saliency, dtype=np.float32)
    if threshold is None:
        return saliency
    return (np.rint(saliency * 255.0) > threshold).astype(np.float32)


def first_argmax(scores: np.ndarray) -> np.ndarray:
    """``scores.argmax(axis=0)`` as uint8 for (C <= 256, H, W) scores without NaN: the first
    channel wins ties. A running maximum over the channels, several times faster than numpy's
    strided reduction over the first axis."""
    best = scores[0].copy()
    index = np.zeros(best.shape, np.uint8)
    for c in range(1, scores.shape[0]):
        better = scores[c] > best
        np.copyto(index, c, where=better)
        np.maximum(best, scores[c], out=best)
    return index


def rule_settings(settings: PseudoLabelSettings | None, overrides: dict) -> PseudoLabelSettings:
    """``settings`` (default: the schema's) with the keys of ``overrides`` replaced (a TypeError
    names a key the section lacks)."""
    settings = settings or DEFAULTS
    return replace(settings, **overrides) if overrides else settings


def pseudo_label(
    classes: np.ndarray,
    maps: np.ndarray,
    saliency: np.ndarray | None,
    settings: PseudoLabelSettings | None = None,
    **overrides,
) -> np.ndarray:
    """Label map (H, W) uint8 from the maps (K, H, W) of the image's classes (K,) and the grey
    saliency (H, W) in [0, 1] (None: the background cue is ``bg_threshold``), binarised at
    ``saliency_threshold`` (see :func:`binarize_saliency`). ``settings``: the rule (the config's
    ``pseudo_labels`` section, default the schema's); ``overrides``: keys of it by name."""
    s = rule_settings(settings, overrides)
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[1:]
    if saliency is not None:
        saliency = binarize_saliency(saliency, s.saliency_threshold)
    cues = np.where(maps < s.alpha, 0.0, maps)
    background = (1.0 - saliency)[None] if saliency is not None else np.full((1, h, w), s.bg_threshold, np.float32)
    scores = np.concatenate([background.astype(np.float32), cues], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    label = lookup[first_argmax(scores)]
    above = np.zeros((h, w), np.uint8)  # how many scores exceed conflict_score, per pixel
    for channel in scores:
        above += channel > s.conflict_score
    label[above > 2] = IGNORE
    if saliency is not None:
        label[(saliency >= 1.0) & (label == 0)] = IGNORE
    return label


def reference_label(
    classes: np.ndarray,
    maps: np.ndarray,
    saliency: np.ndarray | None,
    settings: PseudoLabelSettings | None = None,
    **overrides,
) -> np.ndarray:
    """The reference's scoring label (H, W) uint8: the arg-max of :func:`pseudo_label` with no
    ignore step (its ``alpha``, ``bg_threshold`` and ``saliency_threshold``), so no pixel is ignored."""
    s = rule_settings(settings, overrides)
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[1:]
    if saliency is not None:
        background = 1.0 - binarize_saliency(saliency, s.saliency_threshold)[None]
    else:
        background = np.full((1, h, w), s.bg_threshold, np.float32)
    scores = np.concatenate([background, np.where(maps < s.alpha, 0.0, maps)], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    return lookup[scores.argmax(axis=0)]
