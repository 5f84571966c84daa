"""The training history beside every model (drs.training.history): written as the run goes,
continuous across a resume, validation mIoU where a stage computes it, TensorBoard optional."""

from __future__ import annotations

import builtins
import logging

import pytest
import torch
from torch import nn

from drs.config.settings import LoopSettings
from drs.training import history as run_history
from drs.training.history import HISTORY_FILE, History, read_history
from drs.training.loop import fit
from test_train_loop import CPU, _blobs, _loader, _step_loss


def _run(out, stop=None, log_every=3, after_step=None):
    x, y = _blobs()
    torch.manual_seed(1)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    fit(
        model,
        optimizer,
        _loader(x, y),
        _step_loss,
        LoopSettings(epochs=3, seed=5, log_every=log_every),
        out,
        device=CPU,
        lr_at_epoch=lambda e: 0.5**e,
        after_step=after_step,
        stop_after_steps=stop,
    )
    return read_history(out / HISTORY_FILE)


def _curve(rows):
    return [(r["epoch"], r["step"], r["loss"], r["lr"]) for r in rows]


def test_rows_every_n_steps_and_at_each_epoch_end(tmp_path):
    rows = _run(tmp_path)  # 4 steps an epoch, 3 epochs: rows at steps 3, 4 | 6, 8 | 9, 12
    assert [int(r["step"]) for r in rows] == [3, 4, 6, 8, 9, 12]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2, 3, 3]
    assert [r["lr"] for r in rows] == pytest.approx([0.3, 0.3, 0.15, 0.15, 0.075, 0.075])
    assert all(r["loss"] > 0 and r["images_per_s"] > 0 and r["val_miou"] is None for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    seconds = [r["seconds"] for r in rows]
    assert seconds == sorted(seconds)


def test_a_resumed_run_has_the_uninterrupted_curve(tmp_path):
    """Interrupted in epoch 2 (after step 6, a row already written for it), resumed after epoch 1:
    no step twice, none missing, the same losses as a run that was never stopped (CPU)."""
    whole = _run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", stop=6)
    assert [int(r["step"]) for r in read_history(tmp_path / "cut" / HISTORY_FILE)] == [3, 4, 6]
    resumed = _run(tmp_path / "cut")
    assert _curve(resumed) == _curve(whole)


def test_a_fresh_run_starts_the_history_over(tmp_path):
    (tmp_path / HISTORY_FILE).write_text("epoch,step,loss\n9,99,1.0\n")
    assert [int(r["step"]) for r in _run(tmp_path)] == [3, 4, 6, 8, 9, 12]


def test_validation_rows_carry_the_miou(tmp_path):
    rows = _run(tmp_path, log_every=100, after_step=lambda step: {"val_miou": step / 100} if step % 5 == 0 else None)
    assert [(int(r["step"]), r["val_miou"]) for r in rows] == [(4, None), (5, 0.05), (8, None), (10, 0.1), (12, None)]


def test_tensorboard_without_the_package_is_skipped_with_a_message(tmp_path, monkeypatch, caplog):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name == "tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with caplog.at_level(logging.WARNING, logger="drs.history"):
        history = History(tmp_path, None, tensorboard=True)
    assert history.writer is None
    assert "tensorboard package is not installed; skipped" in caplog.text and "pip install" in caplog.text
    history.add(epoch=1, step=1, loss=0.5, lr=0.1, images_per_s=3.0, seconds=1.0)
    assert read_history(tmp_path / HISTORY_FILE)[0]["loss"] == 0.5


def test_use_tensorboard_is_what_the_stages_flag_sets(monkeypatch):
    monkeypatch.setattr(run_history, "TENSORBOARD", False)
    run_history.use_tensorboard(True)
    assert run_history.TENSORBOARD is True
