"""drs.train.fit actually trains, and its checkpoints are written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from drs.config.settings import LoopSettings
from drs.errors import UserError
from drs.store.model_files import LAST_CHECKPOINT, MODEL_FILE, atomic_save, load_checkpoint, save_model
from drs.training.loop import _batch_loss, fit

CPU = torch.device("cpu")


def _blobs(n_major=48, n_minor=16):
    """Two well separated 2-D clusters, unbalanced: a constant predictor scores 75 %."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.randn(n_major, 2, generator=g) * 0.3 + torch.tensor([-1.5, 0.0]),
            torch.randn(n_minor, 2, generator=g) * 0.3 + torch.tensor([1.5, 0.0]),
        ]
    )
    y = torch.cat([torch.zeros(n_major, dtype=torch.long), torch.ones(n_minor, dtype=torch.long)])
    return x, y


def _loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator())


def _step_loss(model, batch, device):
    inputs, targets = (t.to(device) for t in batch)
    return nn.functional.cross_entropy(model(inputs), targets)


def _zero_linear():
    model = nn.Linear(2, 2)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


def test_fit_lowers_the_loss_and_beats_a_constant_predictor(tmp_path):
    x, y = _blobs()
    model = _zero_linear()  # starts at chance: loss ln 2
    with torch.no_grad():
        before = nn.functional.cross_entropy(model(x), y).item()
    assert before == pytest.approx(0.6931, abs=1e-3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    fit(model, optimizer, _loader(x, y), _step_loss, LoopSettings(epochs=5, log_every=100), tmp_path, device=CPU)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        after = nn.functional.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(1) == y).float().mean().item()
    majority = max((y == 0).float().mean().item(), (y == 1).float().mean().item())
    assert after < 0.3 * before, (before, after)
    assert accuracy >= 0.95 > majority + 0.15
    # the epoch checkpoint holds the trained weights and the epoch count
    state = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    assert state["epoch"] == 5 and torch.equal(state["model"]["weight"], model.weight.detach())


def test_fit_applies_the_learning_rate_schedule_each_epoch(tmp_path):
    x, y = _blobs()
    model = _zero_linear()
    optimizer = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 1.0}])
    seen = []

    def step_loss(model_, batch, device):
        seen.append(tuple(g["lr"] for g in optimizer.param_groups))
        return _step_loss(model_, batch, device)

    fit(
        model,
        optimizer,
        _loader(x, y),
        step_loss,
        LoopSettings(epochs=3, log_every=100),
        tmp_path,
        lr_at_epoch=lambda e: [1.0, 0.5, 0.25][e],
        device=CPU,
    )
    steps = len(_loader(x, y))
    expected = [lr * f for f in (1.0, 0.5, 0.25) for _ in range(steps) for lr in (0.1, 1.0)]
    assert [lr for pair in seen for lr in pair] == pytest.approx(expected)


def test_fit_refuses_a_non_finite_loss(tmp_path):
    """Checked where the loop reads the loss back (each log and history row, each epoch's end: no
    host synchronisation per step), always before a checkpoint is written."""
    x, y = _blobs()
    model = _zero_linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 1, steps 1-4"):
        fit(
            model,
            optimizer,
            _loader(x, y),
            lambda m, b, d: _step_loss(m, b, d) * float("nan"),
            LoopSettings(epochs=1),
            tmp_path,
            device=CPU,
        )
    assert not (tmp_path / LAST_CHECKPOINT).exists()


def test_sum_and_count_loss_is_divided_by_the_count():
    total = torch.tensor(6.0, requires_grad=True)
    loss, reported = _batch_loss((total, 4), distributed=False)
    assert loss.item() == pytest.approx(1.5) and reported.item() == pytest.approx(1.5)
    loss, _ = _batch_loss((total, 0), distributed=False)  # nothing counted: no division by 0
    assert loss.item() == pytest.approx(6.0)
    mean = torch.tensor(0.25)
    assert _batch_loss(mean, distributed=False) == (mean, mean)


# ---------------------------------------------------------------- atomic checkpoints


def _failing_save(obj, f, *args, **kwargs):
    """torch.save that dies half-way: some bytes reach the file (a path or an open file), then the
    disk is 'full'."""
    if hasattr(f, "write"):
        f.write(b"PK\x03\x04 partial")
        f.flush()
    else:
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 partial")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("name", [LAST_CHECKPOINT, MODEL_FILE])
def test_a_crash_while_saving_keeps_the_previous_file(tmp_path, monkeypatch, name):
    path = tmp_path / name
    atomic_save({"epoch": 1, "w": torch.ones(3)}, path)
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(UserError, match="no space left"):  # one error naming the path
        atomic_save({"epoch": 2, "w": torch.zeros(3)}, path)
    previous = load_checkpoint(path)  # still the complete previous file
    assert previous["epoch"] == 1 and torch.equal(previous["w"], torch.ones(3))
    # whatever the failed write left is under a hidden name, never the final one
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if p != path)


def test_a_crash_while_saving_the_model_keeps_the_previous_model(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    first = save_model(model, {"kind": "test"}, tmp_path)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(torch, "save", _failing_save)
    nn.init.zeros_(model.weight)
    with pytest.raises(UserError, match="no space left"):
        save_model(model, {"kind": "test"}, tmp_path)
    kept = load_checkpoint(first)
    assert kept["kind"] == "test" and torch.equal(kept["state_dict"]["weight"], expected["weight"])


def test_a_save_never_shows_a_partial_file_under_the_final_name(tmp_path, monkeypatch):
    """While torch.save writes, the final name is absent (first save) or the old file (later)."""
    path = tmp_path / "last.pt"
    real_save = torch.save
    observed = []

    def watching_save(obj, f, *args, **kwargs):
        target = Path(f.name if hasattr(f, "name") else f)  # the open temporary file, or a path
        observed.append(target != path and (not path.exists() or load_checkpoint(path)["n"] == obj["n"] - 1))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", watching_save)
    atomic_save({"n": 1}, path)
    atomic_save({"n": 2}, path)
    assert observed == [True, True] and load_checkpoint(path)["n"] == 2
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


# ---------------------------------------------------------------- resumption, logging, loss pairs


class _Counting:
    """step_loss that counts its calls (and checks the forward ran in float32: no autocast on CPU)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, batch, device):
        self.calls += 1
        out = model(batch[0].to(device))
        assert out.dtype == torch.float32
        return nn.functional.cross_entropy(out, batch[1].to(device))


def test_fit_resumes_after_an_interruption_and_ends_like_an_uninterrupted_run(tmp_path, caplog):
    x, y = _blobs()

    def run(out, stop=None, count=None):
        torch.manual_seed(1)
        model = nn.Linear(2, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)  # momentum: state to resume
        fit(
            model,
            optimizer,
            _loader(x, y),
            count or _Counting(),
            LoopSettings(epochs=3, seed=5, log_every=100),
            out,
            device=CPU,
            extra_state={"tag": "a"},
            stop_after_steps=stop,
        )
        return model

    whole = run(tmp_path / "whole")
    steps = len(_loader(x, y))  # 4 per epoch
    first = _Counting()
    with pytest.raises(KeyboardInterrupt, match="stopped after 6 steps"):
        run(tmp_path / "cut", stop=6, count=first)  # in epoch 2
    assert first.calls == 6 and load_checkpoint(tmp_path / "cut" / LAST_CHECKPOINT)["epoch"] == 1
    second = _Counting()
    with caplog.at_level("INFO", logger="drs.train"):
        resumed = run(tmp_path / "cut", count=second)
    assert "resuming from" in caplog.text and "after epoch 1 of 3" in caplog.text
    assert second.calls == 2 * steps  # epochs 2 and 3 only
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fit_logs_the_running_loss(tmp_path, caplog):
    """The logged loss is the running mean: the first step's loss, then 0.9 x running + 0.1 x loss."""
    weight = nn.Parameter(torch.zeros(()))
    model = nn.Module()
    model.weight = weight
    values = iter([1.0, 2.0, 3.0, 4.0])
    optimizer = torch.optim.SGD([weight], lr=0.1)
    loader = DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2, generator=torch.Generator())
    with caplog.at_level("INFO", logger="drs.train"):
        fit(
            model,
            optimizer,
            loader,
            lambda m, b, d: m.weight * 0 + next(values),
            LoopSettings(epochs=1, log_every=2),
            tmp_path,
            name="toy",
            device=CPU,
        )
    # running: 1, 1.1, 1.29, 1.561
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("toy epoch 1/1 step 2/4 loss 1.1000 lr 1.00e-01 ") for m in messages), messages
    assert f"toy: epoch 1/1 done, loss 1.5610, checkpoint {tmp_path / LAST_CHECKPOINT}" in messages
    assert optimizer.param_groups[0]["lr"] == 0.1  # no schedule: the base rate


def test_sum_and_count_loss_under_several_processes(monkeypatch):
    """Two processes holding the same (sum, count): the loss to backpropagate is this process's sum
    over the global count times the process count (DDP then averages the gradients), the reported
    loss the global mean."""
    from drs.runtime import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "all_reduce_mean", lambda value: value.detach().clone())
    total = torch.tensor(6.0, requires_grad=True)
    loss, reported = _batch_loss((total, torch.tensor(4)), distributed=True)
    assert loss.item() == pytest.approx(6.0 * 2 / 8) and reported.item() == pytest.approx(12 / 8)
    loss.backward()
    assert total.grad.item() == pytest.approx(2 / 8)
    loss, reported = _batch_loss((total, 0), distributed=True)  # nothing counted anywhere
    assert loss.item() == pytest.approx(6.0 * 2) and reported.item() == pytest.approx(12.0)
    mean = torch.tensor(0.5)
    loss, reported = _batch_loss(mean, distributed=True)
    assert loss is mean and reported.item() == 0.5
