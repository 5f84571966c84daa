"""drs.train.fit actually trains, and its checkpoints are written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from drs import train
from drs.train import LoopSettings, atomic_save, fit, load_checkpoint, save_model

CPU = torch.device("cpu")


def _blobs(n_major=48, n_minor=16):
    """Two well separated 2-D clusters, unbalanced: a constant predictor scores 75 %."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(n_major, 2, generator=g) * 0.3 + torch.tensor([-1.5, 0.0]),
                   torch.randn(n_minor, 2, generator=g) * 0.3 + torch.tensor([1.5, 0.0])])  # fmt: skip
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
    state = load_checkpoint(tmp_path / train.LAST_CHECKPOINT)
    assert state["epoch"] == 5 and torch.equal(state["model"]["weight"], model.weight.detach())


def test_fit_applies_the_learning_rate_schedule_each_epoch(tmp_path):
    x, y = _blobs()
    model = _zero_linear()
    optimizer = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 1.0}])
    seen = []

    def step_loss(model_, batch, device):
        seen.append(tuple(g["lr"] for g in optimizer.param_groups))
        return _step_loss(model_, batch, device)

    fit(model, optimizer, _loader(x, y), step_loss, LoopSettings(epochs=3, log_every=100), tmp_path,
        lr_at_epoch=lambda e: [1.0, 0.5, 0.25][e], device=CPU)  # fmt: skip
    steps = len(_loader(x, y))
    expected = [lr * f for f in (1.0, 0.5, 0.25) for _ in range(steps) for lr in (0.1, 1.0)]
    assert [lr for pair in seen for lr in pair] == pytest.approx(expected)


def test_fit_refuses_a_non_finite_loss(tmp_path):
    x, y = _blobs()
    model = _zero_linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="epoch 1 step 1"):
        fit(model, optimizer, _loader(x, y), lambda m, b, d: _step_loss(m, b, d) * float("nan"),
            LoopSettings(epochs=1), tmp_path, device=CPU)  # fmt: skip
    assert not (tmp_path / train.LAST_CHECKPOINT).exists()


def test_sum_and_count_loss_is_divided_by_the_count():
    total = torch.tensor(6.0, requires_grad=True)
    loss, reported = train._batch_loss((total, 4), distributed=False)
    assert loss.item() == pytest.approx(1.5) and reported.item() == pytest.approx(1.5)
    loss, _ = train._batch_loss((total, 0), distributed=False)  # nothing counted: no division by 0
    assert loss.item() == pytest.approx(6.0)
    mean = torch.tensor(0.25)
    assert train._batch_loss(mean, distributed=False) == (mean, mean)


# ---------------------------------------------------------------- atomic checkpoints


def _failing_save(obj, f, *args, **kwargs):
    """torch.save that dies half-way: some bytes reach the file, then the disk is 'full'."""
    with open(f, "wb") as out:
        out.write(b"PK\x03\x04 partial")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("name", [train.LAST_CHECKPOINT, train.MODEL_FILE])
def test_a_crash_while_saving_keeps_the_previous_file(tmp_path, monkeypatch, name):
    path = tmp_path / name
    atomic_save({"epoch": 1, "w": torch.ones(3)}, path)
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(OSError, match="No space left"):
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
    with pytest.raises(OSError):
        save_model(model, {"kind": "test"}, tmp_path)
    kept = load_checkpoint(first)
    assert kept["kind"] == "test" and torch.equal(kept["state_dict"]["weight"], expected["weight"])


def test_a_save_never_shows_a_partial_file_under_the_final_name(tmp_path, monkeypatch):
    """While torch.save writes, the final name is absent (first save) or the old file (later)."""
    path = tmp_path / "last.pt"
    real_save = torch.save
    observed = []

    def watching_save(obj, f, *args, **kwargs):
        observed.append(Path(f) != path and (not path.exists() or load_checkpoint(path)["n"] == obj["n"] - 1))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", watching_save)
    atomic_save({"n": 1}, path)
    atomic_save({"n": 2}, path)
    assert observed == [True, True] and load_checkpoint(path)["n"] == 2
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
