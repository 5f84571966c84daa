"""The segmenter's schedule: poly decay stepped per iteration (the reference's PolyLR), a length in
iterations, and the per-epoch variant the default run keeps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from drs.config.settings import LoopSettings, SegmenterSettings
from drs.errors import UserError
from drs.training.loop import fit
from drs.training.schedules import poly_decay


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


def test_best_on_val_keeps_the_best_validation(tmp_path, monkeypatch):
    """segmenter.val_every: a validation every N steps; best.pt holds the model at the best one,
    flagged selected_on_val, and drs evaluate says so in its protocol."""
    import drs.training.validation
    from drs.data.synth import generate
    from drs.data.synth_spec import SynthSpec
    from drs.data.voc import VOCDataset
    from drs.evaluation.evaluate import evaluate
    from drs.inference.segment import validation_miou
    from drs.store.model_files import load_segmenter
    from drs.training.segmenter import train_segmenter

    data = generate(
        tmp_path / "data",
        SynthSpec(num_train=8, num_val=2, image_size=40, num_classes=2, object_size=(16, 24), clutter=1),
        workers=1,
    )
    seen = []

    def recording(*args, **kwargs):
        seen.append(validation_miou(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(drs.training.validation, "validation_miou", recording)
    settings = SegmenterSettings.from_dict(
        dict(
            backbone="resnet18",
            width=0.125,
            pretrained="none",
            epochs=3,
            batch_size=4,
            crop_size=32,
            lr=0.05,
            val_every=2,
            val_crop_size=32,
        )
    )
    train_segmenter(data, "train", None, tmp_path / "seg", settings)
    assert len(seen) == 3  # 2 steps per epoch, 3 epochs, every 2 steps
    model, record = load_segmenter(tmp_path / "seg" / "best.pt")
    chosen = record["selected_on_val"]
    assert chosen["miou"] == max(seen) and chosen["step"] == 2 * (seen.index(max(seen)) + 1)
    assert validation_miou(model, VOCDataset(data, "val"), "reference", 32) == pytest.approx(max(seen))
    monkeypatch.undo()
    result = evaluate(tmp_path / "seg" / "best.pt", data, "val", tmp_path / "pred")
    assert result["protocol"]["selected_on_val"] is True and result["protocol"]["checkpoint"].startswith(
        "best on val (step"
    )
    last = evaluate(tmp_path / "seg" / "model.pt", data, "val", tmp_path / "pred")
    assert last["protocol"]["selected_on_val"] is False and last["protocol"]["checkpoint"] == "last"
