"""The reference's saliency binarisation (grey > 50 is salient) in the pseudo-label rule, on
hand-made arrays of soft (grey) saliency, and the same rule in eval-maps and pseudo-labels."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from drs.config.arguments import saliency_threshold_arg
from drs.labels.rule import binarize_saliency, pseudo_label


def grey(*values: int) -> np.ndarray:
    """A 1 x N saliency map as load_saliency returns it: grey / 255."""
    return np.array([values], dtype=np.float32) / 255.0


def test_soft_saliency_above_50_makes_a_weak_object_win():
    # object score 0.3 everywhere; grey 60, 128, 200 are salient (background score 0), grey 40 is not
    classes = np.array([4])
    maps = np.full((1, 1, 4), 0.3, dtype=np.float32)
    label = pseudo_label(classes, maps, grey(60, 128, 200, 40))
    assert label.tolist() == [[4, 4, 4, 0]]


def test_continuous_saliency_is_an_explicit_option():
    # grey 60 and 128 leave background scores 0.76 and 0.50 above the object's 0.3
    classes = np.array([4])
    maps = np.full((1, 1, 4), 0.3, dtype=np.float32)
    label = pseudo_label(classes, maps, grey(60, 128, 200, 40), saliency_threshold=None)
    assert label.tolist() == [[0, 0, 4, 0]]


def test_salient_background_is_ignored_above_grey_50():
    # no object cue (0.1 < alpha): the label is background; salient (grey > 50) -> 255
    classes = np.array([2])
    maps = np.full((1, 1, 4), 0.1, dtype=np.float32)
    label = pseudo_label(classes, maps, grey(51, 128, 50, 0))
    assert label.tolist() == [[255, 255, 0, 0]]


def test_threshold_is_strict_and_configurable():
    assert binarize_saliency(grey(50, 51, 255, 0)).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert binarize_saliency(grey(50, 51, 128, 129), 128).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    assert binarize_saliency(grey(7, 200), None).tolist() == grey(7, 200).tolist()


def test_threshold_argument():
    assert saliency_threshold_arg("50") == 50.0
    assert saliency_threshold_arg("continuous") is None
    with pytest.raises(argparse.ArgumentTypeError):
        saliency_threshold_arg("300")
