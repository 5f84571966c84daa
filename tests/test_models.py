"""The DRS module and the DRS classifier (modified VGG-16)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

from drs.errors import UserError
from drs.models.drs import DRS, activation
from drs.models.vgg import DRSClassifier, drs_vgg16, imagenet_weights_path

SMALL = 0.25  # width used wherever width 1 is not essential


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _controller(module: DRS, x: torch.Tensor) -> torch.Tensor:
    """The paper's controller, computed here without the module's own code: the fixed delta, or
    sigmoid of the bias-free FC applied to each channel's spatial *average*."""
    if module.kind == "fixed":
        return torch.full(x.shape[:2], module.delta)
    average = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])
    return 1 / (1 + torch.exp(-(average @ module.fc.weight.detach().T)))


def _bound(module: DRS, x: torch.Tensor) -> torch.Tensor:
    """controller x the channel's maximum (taken by hand), shape (B, C, 1, 1)."""
    channel_max = x.flatten(2).max(dim=2).values
    return (_controller(module, x) * channel_max)[:, :, None, None]


# ---------------------------------------------------------------- DRS module


@pytest.mark.parametrize("kind,delta", [("learnable", None), ("fixed", 0.55)])
def test_drs_output_never_exceeds_controller_times_channel_max(kind, delta):
    module = DRS(8, kind, delta)
    x = torch.rand(3, 8, 7, 9) * 5
    out = module(x)
    bound = _bound(module, x)
    assert out.shape == x.shape
    assert torch.all(out <= bound + 1e-6)
    # every channel is actually suppressed at its maximum (controller < 1)
    assert torch.allclose(out.amax(dim=(2, 3), keepdim=True), bound)


@pytest.mark.parametrize("kind,delta", [("learnable", None), ("fixed", 0.3)])
def test_drs_keeps_values_below_the_bound(kind, delta):
    module = DRS(6, kind, delta)
    x = torch.rand(2, 6, 5, 5)
    out = module(x)
    below = x < _bound(module, x)
    assert below.any() and (~below).any()
    assert torch.equal(out[below], x[below])


def test_drs_delta_one_is_identity_on_non_negative_input():
    x = torch.rand(2, 4, 6, 6)
    x[0, 1] = 0  # an all-zero channel stays zero
    assert torch.equal(DRS(4, "fixed", 1.0)(x), x)


def test_drs_gradients_reach_input_and_controller():
    module = DRS(5, "learnable")
    x = torch.rand(2, 5, 4, 4, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert module.fc.weight.grad is not None and module.fc.weight.grad.abs().sum() > 0
    assert module.fc.bias is None


def test_drs_learnable_controller_on_hand_made_input():
    module = DRS(2, "learnable")
    with torch.no_grad():
        module.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    x = torch.tensor([[[[0.0, 2.0], [2.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # averages 2 and 1, maxima 4 and 1
    c0, c1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))  # sigmoid(2), sigmoid(-1)
    torch.testing.assert_close(module.controller(x), torch.tensor([[c0, c1]]))
    expected = torch.tensor([[[[0.0, 2.0], [2.0, 4 * c0]], [[c1, c1], [c1, c1]]]])
    torch.testing.assert_close(module(x), expected)
    torch.testing.assert_close(DRS(2, "fixed", 0.25)(x), torch.tensor([[[[0.0, 1.0], [1.0, 1.0]], [[0.25] * 2] * 2]]))


def test_drs_controller_matches_the_paper_formula():
    module = DRS(8, "learnable")
    with torch.no_grad():
        module.fc.weight.normal_(0, 0.3)  # far from the near-0.5 start, so that pooling choices show
    x = torch.rand(3, 8, 7, 9) * 5
    torch.testing.assert_close(module.controller(x), _controller(module, x))


def test_drs_controller_shape_range_and_initialisation():
    module = DRS(64, "learnable")
    assert module.fc.weight.shape == (64, 64)
    assert module.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)
    c = module.controller(torch.rand(3, 64, 5, 5))
    assert c.shape == (3, 64)
    assert torch.all((c > 0) & (c < 1))
    assert torch.allclose(c, torch.full_like(c, 0.5), atol=0.05)  # starts near 0.5
    fixed = DRS(4, "fixed", 0.7).controller(torch.rand(2, 4, 3, 3))
    assert fixed.shape == (2, 4) and torch.all(fixed == 0.7)


@pytest.mark.parametrize(
    "kind,delta,match",
    [
        ("soft", None, "unknown"),
        ("fixed", None, "needs delta"),
        ("fixed", 0.0, "out of range"),
        ("fixed", 1.5, "out of range"),
        ("fixed", "0.5", "expected a number"),
        ("learnable", 0.5, "only used by kind 'fixed'"),
        ("none", None, "not a DRS module"),
    ],
)
def test_drs_argument_errors(kind, delta, match):
    with pytest.raises(ValueError, match=match):
        DRS(4, kind, delta)


@pytest.mark.parametrize("shape", [(2, 4, 5), (2, 3, 5, 5), (2, 4, 5, 5, 1)])
def test_drs_rejects_input_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=rf"DRS expects input \(B, 4, H, W\); got {re.escape(str(shape))}"):
        DRS(4, "fixed", 0.5)(torch.rand(*shape))


def test_drs_extra_repr_and_activation_helper():
    assert "kind='fixed', delta=0.55" in repr(DRS(3, "fixed", 0.55))
    assert "kind='learnable'" in repr(DRS(3))
    act = activation(3, "learnable")
    assert isinstance(act, nn.Sequential) and isinstance(act[0], nn.ReLU) and not act[0].inplace
    assert isinstance(act[1], DRS)
    plain = activation(3, "none")
    assert type(plain) is nn.ReLU
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(activation(3, "fixed", 1.0)(x), torch.relu(x))
    with pytest.raises(ValueError):
        activation(3, "none", 0.5)


# ---------------------------------------------------------------- classifier


@pytest.mark.parametrize("size", [(64, 64), (96, 80)])
def test_classifier_output_shapes(size):
    model = drs_vgg16(20, width=SMALL)
    x = torch.randn(2, 3, *size)
    logits = model(x)
    assert logits.shape == (2, 20)
    maps = model.class_maps(x)
    assert maps.shape == (2, 20, size[0] // 8, size[1] // 8)
    assert model.output_stride == 8


def test_forward_with_maps_matches_separate_calls():
    model = drs_vgg16(5, width=SMALL).eval()
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        logits, maps = model(x, return_maps=True)
        assert torch.allclose(logits, model(x))
        assert torch.allclose(maps, model.class_maps(x))
    assert torch.allclose(logits, maps.mean(dim=(2, 3)))
    assert (maps < 0).any()  # raw maps, no ReLU after the 1x1 conv


@pytest.mark.parametrize("stages,stride,channels", [(5, 8, 128), (4, 8, 128), (3, 4, 64)])
def test_stages_option(stages, stride, channels):
    model = drs_vgg16(3, width=SMALL, stages=stages)
    assert model.output_stride == stride
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum([2, 2, 3, 3, 3][:stages])
    assert convs[-1].out_channels == channels
    assert not isinstance(model.backbone[-1], nn.MaxPool2d)  # no pooling after the last stage
    assert model(torch.randn(1, 3, 64, 64), return_maps=True)[1].shape == (1, 3, 64 // stride, 64 // stride)
    assert len(model.drs_modules()) == sum([2, 2, 3, 3, 3][:stages]) + 3


def test_backbone_is_the_modified_vgg16():
    model = drs_vgg16(20, width=SMALL)
    pools = [m for m in model.backbone if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4  # pool5 removed
    assert [(p.kernel_size, p.stride) for p in pools[:3]] == [(2, 2)] * 3
    assert (pools[3].kernel_size, pools[3].stride, pools[3].padding) == (3, 1, 1)
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 64] + [128] * 6
    assert [c.dilation for c in convs] == [(1, 1)] * 10 + [(2, 2)] * 3
    assert [c.padding for c in convs] == [(1, 1)] * 10 + [(2, 2)] * 3
    extra = [m for m in model.extra if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in extra] == [(128, (3, 3))] * 3
    assert model.classifier.kernel_size == (1, 1) and model.classifier.out_channels == 20
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    for conv in convs + extra:  # He init, zero bias
        std = math.sqrt(2 / (9 * conv.out_channels))
        assert conv.weight.std().item() == pytest.approx(std, rel=0.15)
        assert torch.all(conv.bias == 0)


def test_batch_norm_variant():
    model = drs_vgg16(4, width=SMALL, batch_norm=True, drs="fixed", delta=0.6)
    layers = list(model.backbone)
    bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 13
    for i, m in enumerate(layers):  # conv -> BN -> ReLU+DRS
        if isinstance(m, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2][1], DRS)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.extra)  # the paper's extra layers
    both = drs_vgg16(4, width=SMALL, batch_norm=True, extra_batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in both.extra) == 3
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    assert all(d.kind == "fixed" and d.delta == 0.6 for d in model.drs_modules())
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_drs_module_count():
    model = drs_vgg16(20, width=SMALL)
    assert sum(isinstance(m, DRS) for m in model.backbone.modules()) == 13
    assert sum(isinstance(m, DRS) for m in model.extra.modules()) == 3
    assert sum(isinstance(m, DRS) for m in model.classifier.modules()) == 0
    plain = drs_vgg16(20, width=SMALL, drs="none")
    assert not any(isinstance(m, DRS) for m in plain.modules())
    assert sum(type(m) is nn.ReLU for m in plain.modules()) == 16


@pytest.mark.parametrize("batch_norm", [False, True])
def test_parameter_groups_partition_with_paper_multipliers(batch_norm):
    model = drs_vgg16(20, width=SMALL, batch_norm=batch_norm, extra_batch_norm=batch_norm)
    groups = model.parameter_groups(0.001)
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.002, 0.01, 0.02])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    by_id = {id(p): name for name, p in model.named_parameters()}
    names = [[by_id[id(p)] for p in g["params"]] for g in groups]
    backbone_w, backbone_b, new_w, new_b = names
    assert all(n.startswith("backbone.") and not n.endswith("fc.weight") for n in backbone_w + backbone_b)
    assert all(n.endswith(".bias") for n in backbone_b + new_b)
    assert all(n.endswith(".weight") for n in backbone_w + new_w)
    drs_fc = [n for n in by_id.values() if n.endswith(".fc.weight")]
    assert len(drs_fc) == 16 and set(drs_fc) <= set(new_w)
    assert {"classifier.weight", "extra.0.weight"} <= set(new_w)
    assert {"classifier.bias", "extra.0.bias"} <= set(new_b)
    assert "backbone.0.weight" in backbone_w and "backbone.0.bias" in backbone_b
    if batch_norm:
        assert "backbone.1.weight" in backbone_w and "extra.1.bias" in new_b
    torch.optim.SGD(groups, lr=0.001, momentum=0.9, weight_decay=5e-4)  # accepted as is


def test_config_roundtrip():
    model = drs_vgg16(7, drs="fixed", delta=0.5, width=SMALL, batch_norm=True, stages=4)
    assert model.config == {
        "num_classes": 7,
        "drs": "fixed",
        "delta": 0.5,
        "width": SMALL,
        "batch_norm": True,
        "stages": 4,
        "extra_batch_norm": False,
        "norm": "batch",
    }
    rebuilt = DRSClassifier.from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert repr(rebuilt) == repr(model)
    with pytest.raises(UserError, match="'depth'"):
        DRSClassifier.from_config({**model.config, "depth": 3})
    with pytest.raises(UserError, match="num_classes"):
        DRSClassifier.from_config({"drs": "none"})
    with pytest.raises(UserError, match="stages"):
        DRSClassifier.from_config({**model.config, "stages": 6})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "width": 0}, "width"),
        ({"num_classes": 3, "stages": 2}, "stages"),
        ({"num_classes": 3, "drs": "fixed"}, "delta"),
        ({"num_classes": 3, "weights": 3}, "weights"),
    ],
)
def test_builder_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        drs_vgg16(**{"width": SMALL, **kwargs})


# ---------------------------------------------------------------- pretrained weights


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert torch.hub.get_dir() == str(home / "hub")
    return home


@pytest.fixture(scope="module")
def vgg16_state() -> dict[str, torch.Tensor]:
    """A torchvision-format VGG-16 state dict with the real feature shapes (torchvision's own
    ``make_layers``); the classifier is a small stand-in, which the loader ignores anyway."""
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in tv_vgg.make_layers(tv_vgg.cfgs["D"]).state_dict().items()}
    state["classifier.0.weight"] = torch.randn(10, 7)
    return state


def test_imagenet_weights_missing_names_the_cache_path(torch_home):
    expected = str(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth")
    assert imagenet_weights_path() == expected
    with pytest.raises(UserError) as err:
        drs_vgg16(20, weights="imagenet")
    assert expected in str(err.value)
    assert "torchvision.models.vgg16(weights='IMAGENET1K_V1')" in str(err.value)
    with pytest.raises(UserError, match="vgg16_bn-6c64b313.pth"):
        drs_vgg16(20, weights="imagenet", batch_norm=True)


def test_imagenet_weights_from_cache_load(torch_home, vgg16_state):
    path = Path(imagenet_weights_path())
    path.parent.mkdir(parents=True)
    torch.save(vgg16_state, path)
    model = drs_vgg16(20, weights="imagenet")
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    assert torch.equal(convs[0].weight, vgg16_state["features.0.weight"])
    assert torch.equal(convs[0].bias, vgg16_state["features.0.bias"])
    # conv5_3 is features.28 in torchvision's numbering
    assert torch.equal(convs[12].weight, vgg16_state["features.28.weight"])
    assert convs[12].dilation == (2, 2)
    assert model.config["num_classes"] == 20 and "weights" not in model.config


def test_weights_from_a_path_with_batch_norm(tmp_path, vgg16_state):
    torch.manual_seed(2)
    features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=True)
    with torch.no_grad():
        features[1].running_mean.uniform_()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    model = drs_vgg16(20, weights=path, batch_norm=True)
    assert torch.equal(model.backbone[0].weight, state["features.0.weight"])
    assert torch.equal(model.backbone[1].running_mean, state["features.1.running_mean"])
    # a plain VGG-16 file does not fit a batch-norm model
    torch.save(vgg16_state, tmp_path / "plain.pth")
    with pytest.raises(UserError, match=r"plain\.pth.*VGG-16-BN"):
        drs_vgg16(20, weights=tmp_path / "plain.pth", batch_norm=True)


def test_weights_path_with_wrong_shapes_names_the_file(tmp_path, vgg16_state):
    state = dict(vgg16_state)
    state["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    path = tmp_path / "wrong_shapes.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"wrong_shapes\.pth.*features\.2\.weight"):
        drs_vgg16(20, weights=str(path))


def test_weights_path_missing_or_unreadable(tmp_path):
    with pytest.raises(UserError, match="nowhere.pth"):
        drs_vgg16(20, weights=str(tmp_path / "nowhere.pth"))
    bad = tmp_path / "garbage.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(UserError, match="garbage.pth"):
        drs_vgg16(20, weights=bad)


@pytest.mark.parametrize("kwargs", [{"width": 0.5}, {"stages": 4}])
def test_pretrained_weights_need_width_one_and_five_stages(kwargs, torch_home):
    with pytest.raises(UserError, match="width 1 and stages 5"):
        drs_vgg16(20, weights="imagenet", **kwargs)
