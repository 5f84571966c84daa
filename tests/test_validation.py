"""The segmenter's periodic validation (segmenter.val_every, the reference's): best.pt and its protocol."""

from __future__ import annotations

import pytest

from drs.config.settings import SegmenterSettings


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
