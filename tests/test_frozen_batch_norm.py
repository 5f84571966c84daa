"""Fine-tuning from a trained classifier (``pretrained:`` a train-classifier model.pt) with batch norm
frozen to its running statistics (``classifier.freeze_batch_norm``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from drs.config.settings import ClassifierSettings
from drs.errors import UserError
from drs.models.vgg import drs_vgg16
from drs.training.classifier import build_classifier

NET = {"width": 0.125, "batch_norm": True, "extra_batch_norm": True, "stages": 3}


def _cam_checkpoint(tmp_path, norm="batch", num_classes=3):
    torch.manual_seed(3)
    cam = drs_vgg16(num_classes, drs="none", norm=norm, **NET)
    for m in cam.modules():  # statistics as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "model.pt"
    torch.save({"kind": "classifier", "state_dict": cam.state_dict(), "model_config": cam.config}, path)
    return cam, path


def test_drs_network_starts_from_a_cam_checkpoint_but_its_controllers(tmp_path):
    cam, path = _cam_checkpoint(tmp_path)
    torch.manual_seed(0)
    fresh = drs_vgg16(3, drs="learnable", **NET)
    torch.manual_seed(0)
    model = drs_vgg16(3, drs="learnable", weights=str(path), **NET)
    state, cam_state = model.state_dict(), cam.state_dict()
    for key, value in cam_state.items():  # every layer, batch-norm statistics included
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    controllers = [k for k in state if k not in cam_state]
    assert controllers and all(k.endswith(".fc.weight") for k in controllers)
    for key in controllers:  # their own initialisation
        torch.testing.assert_close(state[key], fresh.state_dict()[key], rtol=0, atol=0)


def test_a_checkpoint_of_other_classes_gives_all_but_the_classifier(tmp_path):
    cam, path = _cam_checkpoint(tmp_path, num_classes=32)  # e.g. pretrained on the corpus
    torch.manual_seed(0)
    fresh = drs_vgg16(3, drs="learnable", **NET)
    torch.manual_seed(0)
    model = drs_vgg16(3, drs="learnable", weights=str(path), **NET)
    torch.testing.assert_close(model.classifier.weight, fresh.classifier.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.extra[1].running_var, cam.extra[1].running_var, rtol=0, atol=0)
    torch.testing.assert_close(model.backbone[0].weight, cam.backbone[0].weight, rtol=0, atol=0)


def test_a_checkpoint_of_another_network_is_refused_naming_the_file(tmp_path):
    _cam, path = _cam_checkpoint(tmp_path, norm="group")
    with pytest.raises(UserError, match=r"classifier checkpoint .*model\.pt: lacks 'backbone\.1\."):
        drs_vgg16(3, drs="learnable", weights=str(path), **NET)


def test_frozen_batch_norm_keeps_and_uses_running_statistics_in_training(tmp_path):
    _cam, path = _cam_checkpoint(tmp_path)
    values = {**NET, "pretrained": str(path)}
    x = torch.randn(4, 3, 32, 32)
    for freeze in (True, False):
        model = build_classifier(
            3, ClassifierSettings.from_dict({**values, "freeze_batch_norm": freeze}), "learnable", None
        )
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        before = [m.running_mean.clone() for m in bns]
        model.train()
        assert model.training and all(m.training is not freeze for m in bns)
        with torch.no_grad():
            trained = model(x)
            evaluated = model.eval()(x)
        kept = all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
        assert kept is freeze and torch.allclose(trained, evaluated, atol=1e-5) is freeze
        # the affine weights still train
        model.train()
        model(x).sum().backward()
        assert all(m.weight.grad is not None and m.weight.requires_grad for m in bns)
    assert ClassifierSettings().freeze_batch_norm is False
