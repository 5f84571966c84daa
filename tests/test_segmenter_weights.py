"""The authors' DeepLabV3+ checkpoint format (VainF's DeepLabV3Plus-Pytorch) loads strictly into
our network and computes what their network computes.

The state dict is built here key by key in their layout, and their forward pass is restated with
torch.nn.functional operations (the backbone is torchvision's ResNet, which their
network/backbone/resnet.py copies); our model is only the thing under test.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet

from drs.errors import UserError
from drs.store.authors import import_vainf_segmenter as import_segmenter
from drs.store.model_files import load_segmenter

NUM_CLASSES = 21


def _bn(state, prefix, channels, gen):
    state[prefix + "weight"] = 1 + 0.1 * torch.randn(channels, generator=gen)
    state[prefix + "bias"] = 0.1 * torch.randn(channels, generator=gen)
    state[prefix + "running_mean"] = 0.1 * torch.randn(channels, generator=gen)
    state[prefix + "running_var"] = 1 + 0.2 * torch.rand(channels, generator=gen)
    state[prefix + "num_batches_tracked"] = torch.tensor(100)


def _conv(state, key, shape, gen):
    fan_in = shape[1] * shape[2] * shape[3]
    state[key] = torch.randn(*shape, generator=gen) * (2 / fan_in) ** 0.5


def vainf_state_dict(depth_fn=resnet.resnet50, num_classes=NUM_CLASSES, seed=0) -> dict:
    """A DeepLabV3+ state dict in VainF's layout: torchvision ResNet names under backbone. (no fc),
    then the V3+ head: project (48), aspp (5 branches of 256, projection), classifier (304->256->C)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = depth_fn(replace_stride_with_dilation=[False, False, True])
    state = {f"backbone.{k}": v.clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}
    for k in list(state):  # non-trivial batch-norm statistics, so that eval mode matters
        if k.endswith("running_var"):
            state[k] = 1 + 0.2 * torch.rand(state[k].shape, generator=gen)
        elif k.endswith("running_mean"):
            state[k] = 0.05 * torch.randn(state[k].shape, generator=gen)
    high, low = 2048, 256
    _conv(state, "classifier.project.0.weight", (48, low, 1, 1), gen)
    _bn(state, "classifier.project.1.", 48, gen)
    _conv(state, "classifier.aspp.convs.0.0.weight", (256, high, 1, 1), gen)
    _bn(state, "classifier.aspp.convs.0.1.", 256, gen)
    for i in (1, 2, 3):
        _conv(state, f"classifier.aspp.convs.{i}.0.weight", (256, high, 3, 3), gen)
        _bn(state, f"classifier.aspp.convs.{i}.1.", 256, gen)
    _conv(state, "classifier.aspp.convs.4.1.weight", (256, high, 1, 1), gen)
    _bn(state, "classifier.aspp.convs.4.2.", 256, gen)
    _conv(state, "classifier.aspp.project.0.weight", (256, 5 * 256, 1, 1), gen)
    _bn(state, "classifier.aspp.project.1.", 256, gen)
    _conv(state, "classifier.classifier.0.weight", (256, 304, 3, 3), gen)
    _bn(state, "classifier.classifier.1.", 256, gen)
    _conv(state, "classifier.classifier.3.weight", (num_classes, 256, 1, 1), gen)
    state["classifier.classifier.3.bias"] = 0.1 * torch.randn(num_classes, generator=gen)
    return state


def their_forward(state: dict, x: torch.Tensor, output_stride: int = 16) -> torch.Tensor:
    """VainF's DeepLabV3+ forward (network/_deeplab.py DeepLabHeadV3Plus, utils.py), restated;
    modeling.py's dilation and ASPP rates per output stride."""
    dilation, rates = {16: ([False, False, True], (6, 12, 18)), 8: ([False, True, True], (12, 24, 36))}[output_stride]
    net = resnet.resnet50(replace_stride_with_dilation=dilation)
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    net.load_state_dict(backbone, strict=False)
    net.eval()
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        low = net.layer1(h)
        out = net.layer4(net.layer3(net.layer2(low)))

        def bn_relu(t, prefix):
            t = F.batch_norm(
                t,
                state[prefix + "running_mean"],
                state[prefix + "running_var"],
                state[prefix + "weight"],
                state[prefix + "bias"],
                training=False,
                eps=1e-5,
            )
            return F.relu(t)

        c = "classifier."
        low = bn_relu(F.conv2d(low, state[c + "project.0.weight"]), c + "project.1.")
        branches = [bn_relu(F.conv2d(out, state[c + "aspp.convs.0.0.weight"]), c + "aspp.convs.0.1.")]
        for i, r in enumerate(rates, 1):
            w = state[f"{c}aspp.convs.{i}.0.weight"]
            branches.append(bn_relu(F.conv2d(out, w, padding=r, dilation=r), f"{c}aspp.convs.{i}.1."))
        pooled = F.adaptive_avg_pool2d(out, 1)
        pooled = bn_relu(F.conv2d(pooled, state[c + "aspp.convs.4.1.weight"]), c + "aspp.convs.4.2.")
        branches.append(F.interpolate(pooled, size=out.shape[-2:], mode="bilinear", align_corners=False))
        aspp = bn_relu(F.conv2d(torch.cat(branches, 1), state[c + "aspp.project.0.weight"]), c + "aspp.project.1.")
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = torch.cat([low, aspp], 1)  # the low-level projection first
        y = bn_relu(F.conv2d(y, state[c + "classifier.0.weight"], padding=1), c + "classifier.1.")
        y = F.conv2d(y, state[c + "classifier.3.weight"], state[c + "classifier.3.bias"])
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _save_vainf(path, state, **extra):
    torch.save({"cur_itrs": 20000, "model_state": state, **extra}, path)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_import_matches_their_forward(tmp_path, output_stride):
    state = vainf_state_dict()
    src = tmp_path / "Deeplabv3_pseudo_segmentation_labels.pth"
    # their main.py saves best_score as a NumPy float beside the weights
    _save_vainf(src, state, best_score=np.float64(0.704), optimizer_state={}, scheduler_state={})
    path = import_segmenter(src, tmp_path / "imported", output_stride=output_stride)
    assert path == tmp_path / "imported" / "model.pt"
    model, record = load_segmenter(path)
    assert record["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert record["model_config"] == {
        "num_classes": 21,
        "backbone": "resnet50",
        "output_stride": output_stride,
        "width": 1.0,
    }
    assert record["class_names"][0] == "background" and len(record["class_names"]) == 21
    x = torch.randn(1, 3, 67, 53)  # odd sizes: the interpolations' alignment matters
    with torch.no_grad():
        ours = model(x)
    theirs = their_forward(state, x, output_stride)
    assert ours.shape == theirs.shape == (1, 21, 67, 53)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def test_misfits_name_the_first_bad_key(tmp_path):
    state = vainf_state_dict()
    bad_shape = dict(state)
    bad_shape["classifier.classifier.0.weight"] = torch.zeros(256, 512, 3, 3)  # two 3x3 convs' fusion input
    _save_vainf(tmp_path / "shape.pth", bad_shape)
    with pytest.raises(UserError, match=r"first bad key 'classifier.classifier.0.weight': shape \(256, 512, 3, 3\)"):
        import_segmenter(tmp_path / "shape.pth", tmp_path / "a")
    extra = dict(state, **{"classifier.decoder.fuse.0.weight": torch.zeros(1)})
    _save_vainf(tmp_path / "extra.pth", extra)
    with pytest.raises(UserError, match="first bad key 'classifier.decoder.fuse.0.weight': not in the model"):
        import_segmenter(tmp_path / "extra.pth", tmp_path / "b")
    missing = {k: v for k, v in state.items() if k != "classifier.aspp.project.1.running_var"}
    _save_vainf(tmp_path / "missing.pth", missing)
    with pytest.raises(UserError, match="first bad key 'classifier.aspp.project.1.running_var': missing"):
        import_segmenter(tmp_path / "missing.pth", tmp_path / "c")
    torch.save(state, tmp_path / "bare.pth")  # a bare state dict is not their checkpoint format
    with pytest.raises(UserError, match="expected a dict with 'model_state'"):
        import_segmenter(tmp_path / "bare.pth", tmp_path / "d")
    assert not any((tmp_path / d / "model.pt").exists() for d in "abcd")


def test_backbone_and_classes_come_from_the_shapes(tmp_path):
    state = vainf_state_dict(resnet.resnet101, num_classes=5)
    _save_vainf(tmp_path / "r101.pth", state)
    with pytest.raises(UserError, match="5-class head; give its class names"):
        import_segmenter(tmp_path / "r101.pth", tmp_path / "x")
    names = ["background", "a", "b", "c", "d"]
    model, record = load_segmenter(import_segmenter(tmp_path / "r101.pth", tmp_path / "x", class_names=names))
    assert record["model_config"]["backbone"] == "resnet101" and record["class_names"] == names
    torch.testing.assert_close(
        model.state_dict()["backbone.layer3.22.conv2.weight"], state["backbone.layer3.22.conv2.weight"]
    )


def test_a_model_pt_of_the_old_layout_is_named(tmp_path):
    from drs.models.deeplab import deeplabv3plus
    from drs.store.model_files import save_model

    model = deeplabv3plus(3, "resnet18", width=0.125)
    state = {k.replace("classifier.classifier.", "decoder.classifier."): v for k, v in model.state_dict().items()}
    record = {"kind": "segmenter", "model_config": model.config, "class_names": ["background", "a", "b"]}
    torch.save({"state_dict": state, **record}, tmp_path / "model.pt")
    with pytest.raises(
        UserError, match=r"model.pt: state dict .*first .*do not fit this DeepLabV3\+.*must be retrained"
    ):
        load_segmenter(tmp_path / "model.pt")
    save_model(model, record, tmp_path)  # the current layout loads
    load_segmenter(tmp_path / "model.pt")


def test_import_weights_command_takes_the_segmenter_kind(tmp_path):
    """`drs import-weights segmenter SRC OUT` writes the same model as the function (one command for
    every released checkpoint); a DRS option is refused for it."""
    from drs.cli import main

    state = vainf_state_dict()
    src = tmp_path / "Deeplabv3_pseudo_segmentation_labels.pth"
    _save_vainf(src, state)
    assert main(["import-weights", "segmenter", str(src), str(tmp_path / "cli"), "--output-stride", "8"]) == 0
    model, record = load_segmenter(tmp_path / "cli" / "model.pt")
    assert record["model_config"]["output_stride"] == 8
    assert record["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        torch.testing.assert_close(model(x), their_forward(state, x, 8), rtol=1e-4, atol=1e-3)
    assert main(["import-weights", "segmenter", str(src), str(tmp_path / "bad"), "--drs", "fixed"]) == 2
