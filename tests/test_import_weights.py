"""`drs import-weights`: a state dict laid out as the reference's VGG modules (models/vgg.py,
models/vgg_refine.py of qjadud1994/DRS), built here, converted into our model.pt; the converted
model's class maps must equal an independent restatement of the reference forward pass (plain
torch.nn.functional ops over the reference-named tensors), not our own model."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from drs.cli import main
from drs.errors import UserError
from drs.store.authors import IMPORTERS
from drs.store.model_files import load_classifier

# VGG-16 as the reference builds it (cfg 'D1': pool5 removed, pool4 3x3 stride 1, conv5 dilated 2)
CHANNELS = [(1, [64, 64]), (2, [128, 128]), (3, [256, 256, 256]), (4, [512, 512, 512]), (5, [512, 512, 512])]


def stages(width: float):
    """(stage, [(in, out) per conv]) at ``width`` (the reference is width 1)."""
    out, cin = [], 3
    for stage, convs in CHANNELS:
        pairs = []
        for c in convs:
            pairs.append((cin, round(c * width)))
            cin = round(c * width)
        out.append((stage, pairs))
    return out


def reference_state(num_classes: int, learnable: bool, width: float = 0.125, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def conv(cin, cout, k=3):
        return torch.randn(cout, cin, k, k, generator=g) * (2.0 / (k * k * cin)) ** 0.5, torch.randn(
            cout, generator=g
        ) * 0.1

    state: dict[str, torch.Tensor] = {}
    index = 0  # position in the reference's `features` list: conv, relu (+ a pool after stages 1-4)
    for stage, convs in stages(width):
        for i, (cin, cout) in enumerate(convs, 1):
            w, b = conv(cin, cout)
            state[f"features.{index}.weight"], state[f"features.{index}.bias"] = w, b
            state[f"layer{stage}_conv{i}.weight"], state[f"layer{stage}_conv{i}.bias"] = w.clone(), b.clone()
            if learnable:
                state[f"layer{stage}_relu{i}.fc.0.weight"] = torch.randn(cout, cout, generator=g) * 0.5
            index += 2
        index += 1 if stage < 5 else 0
    c = round(512 * width)
    for i in (1, 2, 3):
        state[f"extra_conv{i}.weight"], state[f"extra_conv{i}.bias"] = conv(c, c)
        if learnable:
            state[f"extra_relu{i}.fc.0.weight"] = torch.randn(c, c, generator=g) * 0.5
    state["extra_conv4.weight"], state["extra_conv4.bias"] = conv(c, num_classes, k=1)
    return state


def reference_class_maps(state, x, mode: str, delta: float | None = None) -> torch.Tensor:
    """The reference VGG.forward up to extra_conv4 (its class maps), restated with functional ops."""

    def act(x, name):
        x = F.relu(x)
        if mode == "relu":  # vgg_refine.py: plain ReLUs
            return x
        x_max = F.adaptive_max_pool2d(x, 1)
        if mode == "learnable":  # DRS_learnable: sigmoid(fc(avg)) times the channel max
            control = torch.sigmoid(F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), state[f"{name}.fc.0.weight"]))
            return torch.min(x, x_max * control[:, :, None, None])
        return torch.min(x, x_max * delta)  # DRS(delta)

    for stage, convs in CHANNELS:
        for i in range(1, len(convs) + 1):
            w, b = state[f"layer{stage}_conv{i}.weight"], state[f"layer{stage}_conv{i}.bias"]
            x = F.conv2d(x, w, b, padding=2, dilation=2) if stage == 5 else F.conv2d(x, w, b, padding=1)
            x = act(x, f"layer{stage}_relu{i}")
        if stage < 4:
            x = F.max_pool2d(x, 2, 2)
        elif stage == 4:
            x = F.max_pool2d(x, 3, 1, 1)
    for i in (1, 2, 3):
        x = act(F.conv2d(x, state[f"extra_conv{i}.weight"], state[f"extra_conv{i}.bias"], padding=1), f"extra_relu{i}")
    return F.conv2d(x, state["extra_conv4.weight"], state["extra_conv4.bias"])


def save_reference(path, state):
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 14}, path)
    return path


@pytest.mark.parametrize(
    "kind,mode,options,width",
    [
        ("classifier", "learnable", {}, 0.125),
        ("classifier", "fixed", {"drs": "fixed", "delta": 0.55}, 0.125),
        ("refiner", "relu", {}, 0.125),
        pytest.param("classifier", "learnable", {}, 1.0, marks=pytest.mark.slow),  # the released shapes
    ],
)
def test_converted_model_computes_the_reference_class_maps(tmp_path, kind, mode, options, width):
    state = reference_state(20, learnable=mode == "learnable", width=width)
    src = save_reference(tmp_path / "ref.pth", state)
    out = IMPORTERS[kind](src, tmp_path / "out", **options)
    assert out == tmp_path / "out" / "model.pt"
    model, record = load_classifier(out, kinds=(kind,))
    assert record["kind"] == kind and record["class_names"][0] == "background" and len(record["class_names"]) == 21
    assert record["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    x = torch.randn(2, 3, 41, 37, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.class_maps(x)
        ref = reference_class_maps(state, x, mode, options.get("delta"))
    assert ours.shape == ref.shape == (2, 20, 5, 4)
    assert float(ref.abs().max()) > 1e-3  # the maps are not trivially zero
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_misfits_are_refused_naming_the_first_bad_key(tmp_path):
    state = reference_state(20, learnable=True)
    src = tmp_path / "ref.pth"

    missing = dict(state)
    del missing["layer3_relu2.fc.0.weight"]
    with pytest.raises(UserError, match="'layer3_relu2.fc.0.weight' missing"):
        IMPORTERS["classifier"](save_reference(src, missing), tmp_path / "a")
    shape = dict(state, **{"extra_conv2.weight": torch.zeros(64, 64, 1, 1)})
    with pytest.raises(UserError, match=r"'extra_conv2.weight' has shape \(64, 64, 1, 1\)"):
        IMPORTERS["classifier"](save_reference(src, shape), tmp_path / "a")
    with pytest.raises(UserError, match="unexpected key 'layer1_relu1.fc.0.weight'.*--drs learnable"):
        IMPORTERS["classifier"](save_reference(src, state), tmp_path / "a", drs="fixed", delta=0.5)
    with pytest.raises(UserError, match="unexpected key 'layer1_relu1.fc.0.weight'"):
        IMPORTERS["refiner"](save_reference(src, state), tmp_path / "a")
    differ = dict(state, **{"features.0.bias": state["features.0.bias"] + 1})
    with pytest.raises(UserError, match="'features.0.bias' differs from 'layer1_conv1.bias'"):
        IMPORTERS["classifier"](save_reference(src, differ), tmp_path / "a")
    with pytest.raises(UserError, match="21 classes but no class names"):
        IMPORTERS["classifier"](
            save_reference(
                src,
                dict(state, **{"extra_conv4.weight": torch.zeros(21, 64, 1, 1), "extra_conv4.bias": torch.zeros(21)}),
            ),
            tmp_path / "a",
        )
    fixed = {k: v for k, v in state.items() if ".fc." not in k}
    with pytest.raises(UserError, match="'layer1_relu1.fc.0.weight' missing.*--drs fixed --delta D"):
        IMPORTERS["classifier"](save_reference(src, fixed), tmp_path / "a")
    assert not (tmp_path / "a" / "model.pt").exists()


def test_command_line(tmp_path, capsys):
    src = save_reference(tmp_path / "ref.pth", reference_state(20, learnable=False))
    assert (
        main(["import-weights", "classifier", str(src), str(tmp_path / "out"), "--drs", "fixed", "--delta", "0.55"])
        == 0
    )
    model, record = load_classifier(tmp_path / "out" / "model.pt")
    assert record["drs"] == "fixed" and record["delta"] == 0.55 and model.config["drs"] == "fixed"
    assert main(["import-weights", "refiner", str(src), str(tmp_path / "r"), "--delta", "0.5"]) == 2
    assert "classifier only" in capsys.readouterr().err


def test_import_weights_never_overwrites_a_model_silently(tmp_path, capsys):
    """OUT/model.pt may be a model trained here: the command refuses to replace it without --replace."""
    from drs.cli import main

    out = tmp_path / "trained"
    out.mkdir()
    (out / "model.pt").write_bytes(b"a trained model")
    for kind in ("classifier", "refiner", "segmenter"):
        assert main(["import-weights", kind, str(tmp_path / "any.pth"), str(out)]) == 2
        assert "--replace" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == b"a trained model"
