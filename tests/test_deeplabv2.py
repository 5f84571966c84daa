"""DeepLab-V2 as the DRS authors train it (DeepLab-V2-PyTorch): the network's layout and size, its
frozen batch norm, the four-output loss, the optimizer's groups and schedule, the import of their
checkpoint, and a workflow run of the tiny DeepLab-V2 experiments."""

from __future__ import annotations

import json
import logging
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50

from drs.config.settings import DeepLabV2Settings
from drs.errors import UserError
from drs.models.deeplabv2 import deeplabv2, torchvision_resnet_state
from drs.store.authors import import_segmenter
from drs.store.model_files import load_model
from drs.training.deeplabv2 import build_deeplabv2, load_initial_weights, multi_output_loss, poly_every
from helpers import TINY_CONFIG, snakemake


def test_resnet101_size_and_the_reference_key_names():
    """DeepLabV2_ResNet101_MSC with 21 classes: 44,048,532 parameters, under the reference's names."""
    model = deeplabv2(21)
    assert sum(p.numel() for p in model.parameters()) == 44_048_532
    keys = list(model.state_dict())
    assert keys[:2] == ["base.layer1.conv1.conv.weight", "base.layer1.conv1.bn.weight"]
    for key in [
        "base.layer2.block1.shortcut.conv.weight",
        "base.layer2.block3.increase.bn.running_var",
        "base.layer4.block23.conv3x3.conv.weight",
        "base.layer5.block1.reduce.conv.weight",
        "base.aspp.c3.bias",
    ]:
        assert key in keys, key
    assert "base.layer2.block2.shortcut.conv.weight" not in keys  # a projection in the first block only
    base = model.base
    # caffe's bottleneck: the stride on the first 1x1; layer4 and layer5 dilated: output stride 8
    assert base.layer3.block1.reduce.conv.stride == (2, 2) and base.layer3.block1.conv3x3.conv.stride == (1, 1)
    assert base.layer4.block2.conv3x3.conv.dilation == (2, 2) and base.layer5.block3.conv3x3.conv.dilation == (4, 4)
    assert base.layer1.pool.ceil_mode and [c.dilation for c in base.aspp.children()] == [
        (r, r) for r in (6, 12, 18, 24)
    ]
    assert all(c.bias is not None for c in base.aspp.children())
    assert model.eval()(torch.zeros(1, 3, 321, 321)).shape == (1, 21, 41, 41)


def test_aspp_starts_at_normal_0_01_and_sums_its_branches():
    torch.manual_seed(0)
    model = deeplabv2(5, backbone="resnet50", width=0.125)
    aspp = model.base.aspp
    weights = torch.cat([c.weight.flatten() for c in aspp.children()])
    assert abs(weights.std().item() - 0.01) < 0.002 and all(torch.all(c.bias == 0) for c in aspp.children())
    x = torch.randn(1, aspp.c0.in_channels, 9, 9)
    assert torch.allclose(aspp(x), sum(c(x) for c in aspp.children()))


def test_multi_scale_outputs_in_training_and_the_maximum_in_eval():
    torch.manual_seed(0)
    model = deeplabv2(3, backbone="resnet50", width=0.125)
    x = torch.randn(2, 3, 65, 65)
    outputs = model.train()(x)
    assert [tuple(o.shape[-2:]) for o in outputs] == [(9, 9), (5, 5), (7, 7), (9, 9)]
    full, half, three_quarters, best = outputs
    up = [F.interpolate(o, size=(9, 9), mode="bilinear", align_corners=False) for o in (half, three_quarters)]
    assert torch.equal(best, torch.max(torch.stack([full, *up]), dim=0)[0])
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), best, atol=1e-6)


def test_batch_norm_stays_frozen_through_a_training_step():
    torch.manual_seed(0)
    model = deeplabv2(3, backbone="resnet50", width=0.125)
    norms = model.base.batch_norms()
    for m in norms:  # statistics that an update would change
        m.running_mean.normal_()
        m.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in model.state_dict().items() if ".bn." in k}
    optimizer = torch.optim.SGD(model.parameter_groups(0.1, 5e-4), lr=0.1, momentum=0.9)
    model.train()
    assert all(not m.training for m in norms) and all(not p.requires_grad for m in norms for p in m.parameters())
    loss = multi_output_loss(model(torch.randn(2, 3, 49, 49)), torch.randint(0, 3, (2, 49, 49)), torch.ones(2, 3))
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # running stats and affine unchanged
    assert not torch.equal(after["base.aspp.c0.weight"], model.base.aspp.c0.weight.detach() * 0)  # it did train


def test_the_four_output_loss_by_hand():
    """Two classes, one image of 2x2, one output of 2x2 and one of 1x1: each term by hand."""
    full = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, 0.0]]]])  # (1, 2, 2, 2)
    small = torch.tensor([[[[1.0]], [[-1.0]]]])  # (1, 2, 1, 1)
    labels = torch.tensor([[[1, 255], [1, 0]]])
    present = torch.tensor([[1.0, 0.0]])  # background only: the own arg-max is class 0 where its logit wins 0

    def ce(logits, target):  # the mean of -log softmax over the pixels counted
        logp = [math.log(math.exp(a) / (math.exp(a) + math.exp(b))) for a, b in logits]
        return -sum(lp if t == 0 else math.log(1 - math.exp(lp)) for lp, t in zip(logp, target)) / len(target)

    pixels = [(2.0, 0.0), (0.0, 1.0), (0.0, 3.0), (1.0, 0.0)]
    full_gt = ce([pixels[0], pixels[2], pixels[3]], [1, 1, 0])  # 255 left out
    # own labels: argmax(logits * present) = argmax over (background logit, 0): background where it is >= 0
    full_own = ce(pixels, [0, 0, 0, 0])
    # the 1x1 output's label: the 2x2 label resized as PIL's NEAREST does, sampling the source at
    # (0 + 0.5) x 2 = 1: pixel (1, 1), background
    small_gt, small_own = ce([(1.0, -1.0)], [0]), ce([(1.0, -1.0)], [0])
    expected = full_gt + full_own + small_gt + small_own
    assert multi_output_loss([full, small], labels, present).item() == pytest.approx(expected, rel=1e-6)


def test_labels_resize_as_the_references_pil_nearest():
    from PIL import Image

    from drs.training.deeplabv2 import resize_labels

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 21, (2, 321, 321))
    for size in [(41, 41), (21, 21), (31, 31), (7, 5)]:
        ours = resize_labels(torch.from_numpy(labels), size).numpy()
        theirs = [np.asarray(Image.fromarray(x.astype(np.float32)).resize(size[::-1], Image.NEAREST)) for x in labels]
        assert np.array_equal(ours, np.stack(theirs).astype(np.int64)), size


def test_parameter_groups_and_the_poly_every_10_iterations():
    model = deeplabv2(4, backbone="resnet50", width=0.125)
    groups = model.parameter_groups(2.5e-4, 5e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("backbone", 2.5e-4, 5e-4),
        ("aspp_weight", 2.5e-3, 5e-4),
        ("aspp_bias", 5e-3, 0.0),
    ]
    convs = [m for m in model.base.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(groups[0]["params"]) == len(convs) - 4 and len(groups[1]["params"]) == len(groups[2]["params"]) == 4
    assert not {id(p) for g in groups for p in g["params"]} & {
        id(p) for m in model.base.batch_norms() for p in m.parameters()
    }
    settings = DeepLabV2Settings(iterations=100, accumulation=2, poly_every=10)
    loop, rates = poly_every(settings, loader_batches=30)  # 15 steps an epoch
    assert (loop.epochs, loop.max_steps, loop.accumulation) == (7, 100, 2)
    factor = rates["lr_at_step"]
    # iterations 1-10 at the base rate, 11-20 at (1 - 10/100)^0.9, ... (the reference's PolynomialLR)
    assert [factor(s) for s in (0, 9, 10, 19, 20, 99)] == pytest.approx([1, 1, 0.9**0.9, 0.9**0.9, 0.8**0.9, 0.1**0.9])
    with pytest.raises(UserError, match="deeplabv2.accumulation"):
        poly_every(DeepLabV2Settings(accumulation=4), loader_batches=3)


def test_initial_weights_skip_the_aspp_and_log_every_skipped_key(caplog):
    torch.manual_seed(0)
    model = deeplabv2(3, backbone="resnet50", width=0.125)
    donor = deeplabv2(3, backbone="resnet50", width=0.125)
    # the COCO DeepLab-V1 file: the backbone under the base's names, and a 1x1 head `fc` of 91 classes
    state = {k[len("base.") :]: v for k, v in donor.state_dict().items() if ".aspp." not in k}
    state["fc.weight"] = torch.zeros(91, 256, 1, 1)
    with caplog.at_level(logging.INFO, logger="drs.deeplabv2"):
        skipped = load_initial_weights(model, state, "coco.pth")
    assert skipped["skipped"] == [f"aspp.c{i}.{p}" for i in range(4) for p in ("weight", "bias")]
    assert skipped["unused"] == ["fc.weight"]
    assert all(f"skip init: {k}" in caplog.text for k in skipped["skipped"]) and "unused: fc.weight" in caplog.text
    assert torch.equal(model.base.layer5.block1.reduce.conv.weight, donor.base.layer5.block1.reduce.conv.weight)
    assert not torch.equal(model.base.aspp.c0.weight, donor.base.aspp.c0.weight)
    with pytest.raises(UserError, match="coco.pth: 'layer1.conv1.conv.weight' has shape"):
        load_initial_weights(model, {"layer1.conv1.conv.weight": torch.zeros(1, 3, 7, 7)}, "coco.pth")


def test_torchvision_resnet_weights_map_onto_every_backbone_tensor():
    mapped = torchvision_resnet_state(resnet50().state_dict())
    own = {k[len("base.") :]: v for k, v in deeplabv2(21, backbone="resnet50").state_dict().items()}
    backbone = {k: v for k, v in own.items() if not k.startswith("aspp.")}
    assert set(mapped) == set(backbone)
    assert all(mapped[k].shape == backbone[k].shape for k in mapped)


def test_coco_needs_the_downloaded_file():
    with pytest.raises(UserError, match="deeplabv2.pretrained': coco"):
        build_deeplabv2(21, DeepLabV2Settings(pretrained="coco", width=0.125, backbone="resnet50"))


# -- the authors' checkpoint, imported, against the test's own restatement of the network ---------------
def _bn(x, s, key):
    return F.batch_norm(
        x, s[f"{key}.running_mean"], s[f"{key}.running_var"], s[f"{key}.weight"], s[f"{key}.bias"], eps=1e-5
    )


def _conv_bn(x, s, key, stride=1, padding=0, dilation=1, relu=True):
    x = _bn(F.conv2d(x, s[f"{key}.conv.weight"], None, stride, padding, dilation), s, f"{key}.bn")
    return F.relu(x) if relu else x


def _restated(s: dict, x: torch.Tensor, blocks=(3, 4, 6, 3)) -> torch.Tensor:
    """DeepLab-V2 written out from the paper's description, on the state dict alone: caffe ResNet
    (stride on the first 1x1), layer4/layer5 dilated 2/4, the ASPP sum; inputs at 1.0, 0.5, 0.75 and
    the maximum of their logits."""

    def base(x):
        x = _conv_bn(x, s, "base.layer1.conv1", stride=2, padding=3)
        x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        for layer, (n, stride, dilation) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4)), 2):
            for b in range(1, n + 1):
                key = f"base.layer{layer}.block{b}"
                st = stride if b == 1 else 1
                h = _conv_bn(x, s, f"{key}.reduce", stride=st)
                h = _conv_bn(h, s, f"{key}.conv3x3", padding=dilation, dilation=dilation)
                h = _conv_bn(h, s, f"{key}.increase", relu=False)
                x = F.relu(h + (_conv_bn(x, s, f"{key}.shortcut", stride=st, relu=False) if b == 1 else x))
        return sum(
            F.conv2d(x, s[f"base.aspp.c{i}.weight"], s[f"base.aspp.c{i}.bias"], 1, r, r)
            for i, r in enumerate((6, 12, 18, 24))
        )

    full = base(x)
    others = [base(F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)) for f in (0.5, 0.75)]
    up = [F.interpolate(o, size=full.shape[-2:], mode="bilinear", align_corners=False) for o in others]
    return torch.max(torch.stack([full, *up]), dim=0)[0]


def test_the_authors_checkpoint_imports_with_the_same_logits(tmp_path):
    torch.manual_seed(0)
    donor = deeplabv2(21, backbone="resnet50", width=0.25)
    state = {}
    for key, value in donor.state_dict().items():  # trained-looking statistics, not the defaults
        value = value.clone()
        if key.endswith(("running_mean", "bias")):
            value.normal_(0, 0.1)
        elif key.endswith(("running_var", "bn.weight")):
            value.uniform_(0.5, 1.5)
        state[f"module.{key}"] = value  # nn.DataParallel's prefix, as torch.save(model.module...) may keep
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # absent in old files
    src = tmp_path / "checkpoint_final.pth"
    torch.save(state, src)
    path = import_segmenter(src, tmp_path / "imported", architecture="deeplabv2")
    model, settings, record = load_model(path)
    assert record["model_config"]["architecture"] == "deeplabv2" and record["model_config"]["backbone"] == "resnet50"
    assert settings == {} and record["imported_from"] == str(src)
    x = torch.randn(1, 3, 97, 113) * 50
    plain = {k[len("module.") :]: v for k, v in state.items()}
    with torch.no_grad():
        diff = (model(x) - _restated(plain, x)).abs().max().item()
    assert diff <= 1e-5, diff
    with pytest.raises(UserError, match="model_state"):
        torch.save({"model_state": {}}, tmp_path / "v3.pth")
        import_segmenter(tmp_path / "v3.pth", tmp_path / "x", architecture="deeplabv2")
    bad = dict(plain)
    bad["base.aspp.c0.weight"] = torch.zeros(21, 7, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="first bad key 'base.aspp.c0.weight'"):
        import_segmenter(tmp_path / "bad.pth", tmp_path / "y", architecture="deeplabv2")


# -- the workflow ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_deeplabv2_target_trains_and_reports_weak_and_full(workdir):
    """`snakemake deeplabv2` on the tiny config: DeepLab-V2 on drs's pseudo labels and on the ground
    truth, evaluated, and their report with the weak/full ratio of DeepLab-V2 alone."""
    config = TINY_CONFIG.read_text()
    config += """
deeplabv2:
  backbone: resnet50
  width: 0.125
  pretrained: none
  iterations: 4
  batch_size: 2
  accumulation: 2
  crop_size: 48
"""
    config = config.replace(
        "experiments:\n",
        "experiments:\n  drs_v2:\n    pseudo_labels_from: drs\n"
        "    segmenter: {architecture: deeplabv2}\n  full_v2:\n    supervision: full\n"
        "    segmenter: {architecture: deeplabv2}\n",
        1,
    )
    path = workdir / "config.yaml"
    path.write_text(config)
    run = snakemake(workdir, "--cores", "2", "--configfile", str(path), "--", "deeplabv2", timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    weak = json.loads((workdir / "results/drs_v2/metrics/segmentation.json").read_text())
    full = json.loads((workdir / "results/full_v2/metrics/segmentation.json").read_text())
    assert weak["network"]["architecture"] == full["network"]["architecture"] == "deeplabv2"
    assert weak["labels"].endswith("results/drs/pseudo_labels") and full["supervision"] == "full"
    summary = (workdir / "results/deeplabv2/summary.md").read_text()
    assert "| DeepLab-V2 on DRS pseudo labels | drs_v2 |" in summary
    ratio = f"{100 * weak['miou'] / full['miou']:.1f}%" if full["miou"] else "–"
    assert ratio in summary and not (workdir / "results/drs/segmenter").exists()  # no DeepLabV3+ trained
    assert np.isfinite(weak["miou"])


def test_seed_deck_preset_plans_the_whole_run(workdir):
    """`snakemake -n --configfile config/seed-deck.yaml` plans every stage, from the downloads to the
    report that carries the deck's published figures."""
    from helpers import REPO

    run = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "seed-deck.yaml"), "--", "all")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    for rule in ["download_voc2012", "train_classifier", "train_refiner", "pseudo_labels", "train_segmenter"]:
        assert f"rule {rule}:" in out, rule
    assert "localrule summary:" in out or "rule summary:" in out
    planned = int(re.search(r"^total\s+(\d+)$", out, re.M).group(1))
    stated = re.search(r"plans its (\d+) jobs", (REPO / "docs" / "running.md").read_text())
    assert stated and planned == int(stated.group(1)), (planned, stated)
