"""Learning-rate schedules: the classifier's and refiner's step decay, the segmenter's poly decay
stepped per iteration (the reference's PolyLR) or per epoch, and a length in iterations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from drs.config.settings import LoopSettings, SegmenterSettings
from drs.errors import UserError
from drs.training.loop import fit
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


def _run(tmp_path, loop, **schedule):
    """The learning rate of each group at every step of a fit() on a toy model (2 groups)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.005}, {"params": model[1].parameters(), "lr": 0.05}], lr=0.05
    )
    loader = DataLoader(
        TensorDataset(torch.randn(10, 2), torch.randn(10, 1)), batch_size=2, shuffle=True, generator=torch.Generator()
    )
    seen = []

    def step_loss(model, batch, device):
        seen.append([g["lr"] for g in optimizer.param_groups])
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    fit(model, optimizer, loader, step_loss, loop, tmp_path, **schedule)
    return seen


def test_poly_per_iteration_as_the_reference(tmp_path):
    # 5 steps per epoch; 12 iterations: 3 epochs, the last cut after 2 steps
    settings = SegmenterSettings.from_dict({"iterations": 12})
    assert settings.schedule(5) == (3, 12)
    loop = LoopSettings(epochs=3, max_steps=12)
    seen = _run(tmp_path / "a", loop, lr_at_step=poly_decay(12, 0.9))
    assert len(seen) == 12
    # the reference's PolyLR: base_lr * (1 - it / max_iters) ** 0.9 at iteration it = 0, 1, ...
    expected = [[base * (1 - i / 12) ** 0.9 for base in (0.005, 0.05)] for i in range(12)]
    assert [lr for pair in seen for lr in pair] == pytest.approx([lr for pair in expected for lr in pair], rel=1e-12)
    assert len({lr[1] for lr in seen}) == 12  # a new rate at every step, not every epoch


def test_poly_per_epoch_keeps_a_rate_per_epoch(tmp_path):
    settings = SegmenterSettings.from_dict({"epochs": 2, "poly_step": "epoch"})
    assert settings.schedule(5) == (2, 10)
    seen = _run(tmp_path, LoopSettings(epochs=2), lr_at_epoch=poly_decay(2, 0.9))
    assert [lr[1] for lr in seen] == pytest.approx([0.05] * 5 + [0.05 * 0.5**0.9] * 5)


def test_schedule_settings_are_checked():
    with pytest.raises(UserError, match="segmenter.poly_step"):
        SegmenterSettings.from_dict({"poly_step": "batch"})
    with pytest.raises(UserError, match="segmenter.iterations"):
        SegmenterSettings.from_dict({"iterations": 0})
    defaults = SegmenterSettings()
    # the reference's run.sh / main.py
    assert (defaults.batch_size, defaults.lr, 10 * defaults.lr, defaults.weight_decay) == (32, 0.005, 0.05, 1e-4)
    assert (defaults.poly_step, defaults.color_jitter, defaults.crop_size, defaults.scale_range) == (
        "iteration",
        0.0,
        513,
        [0.5, 2.0],
    )
    assert math.isclose(defaults.poly_power, 0.9)
