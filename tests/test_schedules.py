"""Learning-rate schedules: the classifier's and refiner's step decay, the segmenter's poly decay."""

from __future__ import annotations

import pytest

from drs.training.schedules import poly_decay, step_decay


def test_step_decay_follows_the_reference_milestones():
    # milestones [5, 10] (1-based epochs): epochs 1-4 at 1x, 5-9 at 0.1x, 10 on at 0.01x
    factor = step_decay([5, 10])
    assert [factor(e) for e in range(12)] == pytest.approx([1.0] * 4 + [0.1] * 5 + [0.01] * 3)


def test_step_decay_gamma_and_no_milestones():
    factor = step_decay([2], gamma=0.5)
    assert [factor(e) for e in range(4)] == pytest.approx([1.0, 0.5, 0.5, 0.5])
    assert [step_decay([])(e) for e in range(3)] == [1.0, 1.0, 1.0]


def test_poly_decay_values():
    factor = poly_decay(10, power=0.9)
    assert factor(0) == 1.0
    assert factor(5) == pytest.approx(0.5**0.9)
    assert factor(9) == pytest.approx(0.1**0.9)
    assert poly_decay(4, power=1.0)(3) == pytest.approx(0.25)
    values = [factor(e) for e in range(10)]
    assert all(a > b > 0 for a, b in zip(values, values[1:]))


def test_poly_decay_of_zero_epochs_does_not_divide_by_zero():
    assert poly_decay(0)(0) == 1.0


def test_step_decay_exact_at_the_milestone_boundaries():
    # the epoch before a milestone is still at the old rate; milestones in any order
    factor = step_decay([10, 5])
    assert (factor(3), factor(4), factor(8), factor(9)) == (1.0, 0.1, 0.1, 0.1**2)
    assert step_decay([1])(0) == 0.1  # a milestone at epoch 1 decays from the start


def test_poly_decay_exact_at_the_ends_and_its_default_power():
    factor = poly_decay(10)
    assert (factor(0), factor(5), factor(10)) == (1.0, 0.5**0.9, 0.0)
