"""`drs sweep-labels` (drs.labels.sweep): the rule over grids of alpha and the saliency threshold in
one pass over a map store, equal at the configured settings to `drs pseudo-labels` + `drs
score-labels` under both scorings, the same for any worker count; and its figure
(drs.report.sweep_figure). A tiny synthetic set whose maps are blurred ground-truth masks."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drs.cli import main
from drs.config.settings import PseudoLabelSettings
from drs.data.fingerprint import split_fingerprint
from drs.data.synth_spec import SynthSpec
from drs.data.voc import VOCDataset
from drs.errors import UserError
from drs.labels import sweep
from drs.labels.rule import binarize_saliency, pseudo_label, reference_label
from drs.report.sweep_figure import draw_sweeps
from drs.store.reader import MapStore
from drs.store.writer import MapStoreWriter
from helpers import box_blur

SPEC = SynthSpec(num_train=6, num_val=2, image_size=48, object_size=(20, 30), num_classes=3)
ALPHAS = "0.1,0.2,0.35,0.5"
THRESHOLDS = "10,50,120,200"


def _make_store(path: Path, root: Path, split: str = "train") -> Path:
    """Maps of each image's classes: its blurred masks, a weaker copy of the first on the others'
    objects (so that cues overlap and conflicts occur)."""
    voc = VOCDataset(root, split)
    fingerprint = split_fingerprint(voc).as_dict()
    with MapStoreWriter(
        path,
        class_names=voc.class_names,
        scales=[48],
        flip=False,
        stage="refined",
        split=split,
        dataset=str(root),
        dataset_fingerprint=fingerprint,
    ) as writer:
        for image_id in voc.ids:
            mask = voc.load_mask(image_id)
            classes = voc.labels(image_id)
            maps = np.stack([box_blur((mask == c).astype(np.float32)) for c in classes])
            maps[0] = np.maximum(maps[0], 0.95 * box_blur((mask > 0).astype(np.float32), 3))
            writer.add(image_id, classes, maps)
    return path


@pytest.fixture(scope="module")
def setup(synth_dataset, tmp_path_factory):
    root = synth_dataset(SPEC)
    return root, _make_store(tmp_path_factory.mktemp("sweep") / "train_refined.h5", root)


def _curve_point(result: dict, key: str, value: float) -> dict:
    return next(p for p in result["sweeps"][key]["points"] if p["value"] == value)


# -- the rule, both labels at once -----------------------------------------------------------------
def test_rule_labels_equal_the_rule_functions():
    rng = np.random.default_rng(0)
    classes = np.array([2, 3, 5])
    # scores on the store's 1/255 steps, so that ties between channels occur
    maps = (rng.integers(0, 256, (3, 24, 24)) / 255.0).astype(np.float32)
    maps[1, :4] = maps[0, :4]
    grey = (rng.integers(0, 256, (24, 24)) / 255.0).astype(np.float32)
    grey[:3] = 1.0
    for alpha in (0.0, 0.1, 0.3, 0.7):
        for threshold in (None, 0.0, 50.0, 128.0, 255.0):
            for conflict in (0.3, 0.9):
                s = PseudoLabelSettings(saliency_threshold=threshold, alpha=alpha, conflict_score=conflict)
                ours, ref = sweep.rule_labels(classes, maps, binarize_saliency(grey, threshold), s)
                assert np.array_equal(ours, pseudo_label(classes, maps, grey, s))
                assert np.array_equal(ref, reference_label(classes, maps, grey, s))
        s = PseudoLabelSettings(alpha=alpha, saliency="none", bg_threshold=0.4)
        ours, ref = sweep.rule_labels(classes, maps, None, s)
        assert np.array_equal(ours, pseudo_label(classes, maps, None, s))
        assert np.array_equal(ref, reference_label(classes, maps, None, s))
    assert (ours == 255).any() and (ours != 255).any(), "the cases must include ignored and labelled pixels"


# -- the sweep against pseudo-labels + score-labels ------------------------------------------------
@pytest.mark.parametrize(
    "rule",
    [{}, {"alpha": 0.35, "saliency_threshold": 120, "conflict_score": 0.5}],
    ids=["defaults", "other-settings"],
)
def test_configured_point_equals_pseudo_labels_and_score_labels(setup, tmp_path, rule, capsys):
    root, store = setup
    settings = json.dumps(rule)
    labels, scored, swept = tmp_path / "labels", tmp_path / "refined.json", tmp_path / "sweep.json"
    assert main(["pseudo-labels", str(store), "--out", str(labels), "--settings", settings, "--workers", "1"]) == 0
    argv = ["score-labels", str(labels), "--dataset", str(root), "--split", "train", "--store", str(store)]
    assert main([*argv, "--out", str(scored), "--settings", settings]) == 0
    argv = ["sweep-labels", str(store), "--dataset", str(root), "--split", "train", "--out", str(swept)]
    assert main([*argv, "--settings", settings, "--alphas", ALPHAS, "--saliency-thresholds", THRESHOLDS]) == 0
    expected = json.loads(scored.read_text())
    result = json.loads(swept.read_text())
    s = PseudoLabelSettings.from_dict(rule)

    assert result["sweeps"]["alpha"]["grid"] == sorted({0.1, 0.2, 0.35, 0.5, s.alpha})
    assert result["sweeps"]["saliency_threshold"]["grid"] == sorted({10.0, 50.0, 120.0, 200.0, s.saliency_threshold})
    for key, configured in (("alpha", s.alpha), ("saliency_threshold", s.saliency_threshold)):
        curve = result["sweeps"][key]
        assert curve["configured"] == configured
        point = _curve_point(result, key, configured)
        assert point["ours"] == {
            "miou": expected["miou"],
            "pixel_accuracy": expected["pixel_accuracy"],
            "ignored_fraction": expected["ignored_fraction"],
        }
        reference = expected["reference_protocol"]
        assert point["reference"] == {"miou": reference["miou"], "pixel_accuracy": reference["pixel_accuracy"]}
    assert expected["ignored_fraction"] > 0, "the store must give ignored pixels"
    assert {expected["protocol"]["name"], expected["reference_protocol"]["protocol"]["name"]} == set(sweep.SCORINGS)
    assert result["protocols"]["ours"]["num_images"] == expected["num_images"] == 6
    assert result["settings"] == asdict(s)
    assert (result["store"], result["split"], result["stage"]) == (str(store), "train", "refined")
    # the curves are not flat, and the best values are the curves' maxima
    for key in ("alpha", "saliency_threshold"):
        curve = result["sweeps"][key]
        for scoring in sweep.SCORINGS:
            values = [p[scoring]["miou"] for p in curve["points"]]
            assert len(set(values)) > 1, (key, scoring)
            best = curve["best"][scoring]
            assert best["miou"] == max(values)
            assert best["value"] == curve["grid"][values.index(max(values))]
    assert f"alpha ({len(result['sweeps']['alpha']['grid'])} values): ours mIoU" in capsys.readouterr().out


def test_one_pass_reads_each_image_once(setup, monkeypatch):
    root, store = setup
    counts: dict[str, list[str]] = {"read": [], "saliency": [], "mask": []}
    for cls, name, key in (
        (MapStore, "read", "read"),
        (VOCDataset, "load_saliency", "saliency"),
        (VOCDataset, "load_mask", "mask"),
    ):
        original = getattr(cls, name)

        def counted(self, image_id, *args, _original=original, _key=key, **kwargs):
            counts[_key].append(image_id)
            return _original(self, image_id, *args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
    result = sweep.sweep_store(store, root, workers=1)
    ids = VOCDataset(root, "train").ids
    for key, seen in counts.items():
        assert sorted(seen) == sorted(ids), key
    assert result["sweeps"]["alpha"]["grid"] == list(sweep.DEFAULT_ALPHAS)  # 0.2 is on it
    assert result["sweeps"]["saliency_threshold"]["grid"] == sorted({*sweep.DEFAULT_SALIENCY_THRESHOLDS, 50.0})


def test_worker_count_does_not_change_the_result(setup):
    root, store = setup
    one = sweep.sweep_store(store, root, alphas=[0.1, 0.3], saliency_thresholds=[30.0, 90.0], workers=1)
    two = sweep.sweep_store(store, root, alphas=[0.1, 0.3], saliency_thresholds=[30.0, 90.0], workers=2)
    assert one == two


def test_without_saliency_the_saliency_curve_is_skipped(setup):
    root, store = setup
    settings = PseudoLabelSettings(saliency="none")
    result = sweep.sweep_store(store, root, settings=settings, alphas=[0.3], workers=1)
    assert result["sweeps"]["saliency_threshold"]["skipped"] == "the rule has saliency: none"
    assert result["sweeps"]["alpha"]["grid"] == [0.2, 0.3]
    with pytest.raises(UserError, match="--saliency-thresholds: the rule's saliency is 'none'"):
        sweep.sweep_store(store, root, settings=settings, saliency_thresholds=[50.0], workers=1)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--alphas", "0.1,1.5"], "--alphas: 1.5 is outside (0, 1)"),
        (["--alphas", "0,0.5"], "--alphas: 0.0 is outside (0, 1)"),
        (["--alphas", "0.1,x"], "--alphas: expected comma-separated numbers, got 'x'"),
        (["--saliency-thresholds", "50,300"], "--saliency-thresholds: 300.0 is outside [0, 255]"),
        (["--split", "val"], "map store of split 'train', not 'val' (--split)"),
    ],
    ids=["alpha-above-1", "alpha-0", "not-a-number", "grey-above-255", "other-split"],
)
def test_bad_options_name_the_fault(setup, tmp_path, capsys, options, message):
    root, store = setup
    out = tmp_path / "sweep.json"
    assert main(["sweep-labels", str(store), "--dataset", str(root), "--out", str(out), *options]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_store_and_store_of_other_data_name_the_file(setup, synth_dataset, tmp_path):
    root, store = setup
    with pytest.raises(UserError, match=f"{tmp_path / 'absent.h5'}: map store not found"):
        sweep.sweep_store(tmp_path / "absent.h5", root)
    other = synth_dataset(replace(SPEC, seed=1))  # same ids, other images
    with pytest.raises(UserError, match=f"map store {store} was made from .* but dataset {other}"):
        sweep.sweep_store(store, other)


# -- the figure ------------------------------------------------------------------------------------
def test_figure_is_a_png_with_both_panels(setup, tmp_path):
    root, store = setup
    drs = sweep.sweep_store(store, root, alphas=[0.1, 0.4], saliency_thresholds=[20.0, 100.0], workers=1)
    cam = sweep.sweep_store(store, root, settings=PseudoLabelSettings(saliency="none"), alphas=[0.3], workers=1)
    out = draw_sweeps({"CAM baseline": cam, "DRS": drs}, tmp_path / "sweep.png")
    assert out == tmp_path / "sweep.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 2 * image.height > 400
    with pytest.raises(UserError, match="sweep 'bad': not a drs sweep-labels JSON object"):
        draw_sweeps({"bad": {"miou": 0.5}}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_the_report_draws_the_sweeps_and_states_the_best_values(setup, tmp_path):
    """drs report --sweep: the threshold figure and, in the summary, the configured and best value
    of each threshold under each scoring, as the sweep JSON holds them."""
    from drs.report.write import write_report

    root, store = setup
    result = sweep.sweep_store(store, root, alphas=[0.1, 0.4], saliency_thresholds=[20.0, 100.0], workers=1)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(result))
    metrics = tmp_path / "refined.json"
    metrics.write_text(
        json.dumps({"miou": 0.5, "pixel_accuracy": 0.9, "per_class_iou": {"a": 0.5}, "split": "train", "num_images": 2})
    )
    summary = tmp_path / "summary.md"
    written = write_report({("drs", "refined"): metrics}, tmp_path / "r", summary, sweeps={"DRS": path})
    assert written["threshold curves"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = summary.read_text()
    alpha = result["sweeps"]["alpha"]
    best = alpha["best"]["ours"]
    assert "- DRS, alpha: ours scoring" in text and f"best {100 * best['miou']:.1f}% at {best['value']:g}" in text
