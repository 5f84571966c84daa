"""The pseudo-label rule's fast arg-max gives exactly the labels of the plain numpy formulation."""

import numpy as np
import pytest

from drs.data.voc import IGNORE
from drs.labels.rule import first_argmax, pseudo_label


def oracle(classes, maps, saliency, alpha, bg_threshold, conflict_score, saliency_threshold):
    """The rule written with numpy's arg-max over the first axis (the form it had before)."""
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[1:]
    if saliency is not None:
        saliency = (np.rint(np.asarray(saliency, np.float32) * 255.0) > saliency_threshold).astype(np.float32)
    cues = np.where(maps < alpha, 0.0, maps)
    background = (1.0 - saliency)[None] if saliency is not None else np.full((1, h, w), bg_threshold, np.float32)
    scores = np.concatenate([background.astype(np.float32), cues], axis=0)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    label = lookup[scores.argmax(axis=0)]
    label[(scores > conflict_score).sum(axis=0) > 2] = IGNORE
    if saliency is not None:
        label[(saliency >= 1.0) & (label == 0)] = IGNORE
    return label


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_first_argmax_is_numpys_with_ties(dtype):
    rng = np.random.default_rng(1)
    for _ in range(50):
        scores = rng.integers(0, 3, (rng.integers(1, 6), 9, 11)).astype(dtype)  # many ties
        assert np.array_equal(first_argmax(scores), scores.argmax(axis=0))


@pytest.mark.parametrize("use_saliency", [True, False])
def test_labels_equal_the_plain_formulation(use_saliency):
    rng = np.random.default_rng(2)
    for _ in range(40):
        k = int(rng.integers(1, 4))
        classes = np.sort(rng.choice(np.arange(1, 21), k, replace=False))
        maps = rng.integers(0, 256, (k, 13, 17)) / 255.0  # store values, ties with the background
        saliency = rng.integers(0, 256, (13, 17)) / 255.0 if use_saliency else None
        rule = dict(alpha=0.2, bg_threshold=0.2, conflict_score=0.1, saliency_threshold=50.0)
        assert np.array_equal(
            pseudo_label(classes, maps, saliency, **rule), oracle(classes, maps, saliency, *rule.values())
        )
