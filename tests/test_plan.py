"""drs.plan: the experiment classes and the report plans the workflow builds from the config, as
pure functions (no Snakemake): every scope, with and without a CAM baseline, given pseudo labels,
fully supervised experiments, seed variants and report.baseline_in_all."""

from __future__ import annotations

import pytest

from drs.config import plan


def config(experiments: dict, main: str = "drs", baseline_in_all: bool = True) -> dict:
    return {
        "experiments": experiments,
        "main_experiment": main,
        "results_dir": "out",
        "train_split": "trainaug",
        "dataset": "synthetic",
        "report": {"baseline_in_all": baseline_in_all},
    }


DRS = {"drs": "learnable"}
CAM = {"drs": "none"}
FIXED = {"drs": "fixed", "delta": 0.55}
FULL = {"supervision": "full"}
GIVEN = {"pseudo_labels_dir": "/labels/released"}

# the workflow's default experiments, plus seeds, given labels and a second fully supervised run
MANY = {
    "drs": DRS,
    "cam": CAM,
    "drs_fixed": FIXED,
    "full": FULL,
    "drs_s1": dict(DRS, seed=1),
    "cam_s1": dict(CAM, seed=1),
    "given": GIVEN,
    "full_s1": dict(FULL, seed=1),
}


def test_experiment_classes():
    c = config(MANY)
    assert plan.weak_experiments(c) == ["drs", "cam", "drs_fixed", "drs_s1", "cam_s1"]
    assert plan.label_experiments(c) == ["given"]
    assert plan.full_experiments(c) == ["full", "full_s1"]
    assert plan.cam_baseline(c) == "cam"
    assert [e for e in MANY if plan.fully_supervised(c, e)] == ["full", "full_s1"]
    assert plan.given_labels(c, "given") == "/labels/released" and plan.given_labels(c, "drs") is None


def test_variant_first_runs_keep_the_first_seed_of_each_variant_in_order():
    c = config({"cam_s2": CAM, "drs_s1": DRS, "cam_s1": CAM, "drs_s2": DRS, "drs_fixed": FIXED, "full": FULL})
    assert plan.variant_first_runs(c) == ["cam_s2", "drs_s1", "drs_fixed"]
    assert plan.cam_baseline(c) == "cam_s2"


def test_no_cam_baseline():
    assert plan.cam_baseline(config({"drs": DRS, "drs_fixed": FIXED, "full": FULL})) is None
    # a given-labels or fully supervised experiment is never the baseline, whatever its drs
    assert plan.cam_baseline(config({"drs": DRS, "g": dict(GIVEN, drs="none"), "f": dict(FULL, drs="none")})) is None


@pytest.mark.parametrize(
    "exp,label",
    [
        ("drs", "DRS"),
        ("cam", "CAM"),
        ("drs_fixed", "DRS (delta=0.55)"),
        ("full", "fully supervised"),
        ("given", "given labels (given)"),
    ],
)
def test_method_label(exp, label):
    assert plan.method_label(config(MANY), exp) == label


def test_all_with_the_cam_baseline():
    p = plan.report_plan(config(MANY), "all")
    assert p["metrics"] == {  # the CAM baseline end to end: the verdict at every stage
        "cam:cam": "out/cam/metrics/cam.json",
        "cam:refined": "out/cam/metrics/refined.json",
        "cam:segmentation": "out/cam/metrics/segmentation.json",
        "drs:cam": "out/drs/metrics/cam.json",
        "drs:refined": "out/drs/metrics/refined.json",
        "drs:segmentation": "out/drs/metrics/segmentation.json",
        "full:segmentation": "out/full/metrics/segmentation.json",  # the first fully supervised only
    }
    assert list(p["metrics"]) == [
        "cam:cam",
        "cam:refined",
        "cam:segmentation",
        "drs:cam",
        "drs:refined",
        "drs:segmentation",
        "full:segmentation",
    ]
    assert p["labels"] == {"cam": "CAM", "drs": "DRS", "full": "fully supervised"}
    assert p["main"] == "drs" and p["baseline"] == "cam"
    assert list(p["maps"].items()) == [
        ("CAM", "out/cam/maps/trainaug.h5"),
        ("DRS", "out/drs/maps/trainaug.h5"),
        ("refined", "out/drs/maps/trainaug_refined.h5"),
    ]
    assert p["pseudo_labels"] == "out/drs/pseudo_labels"
    assert p["segmenter"] == "out/drs/segmenter/model.pt"
    assert p["dataset"] == "out/data/synthetic" and p["split"] == "trainaug"
    assert plan.report_experiments(p) == ["cam", "drs", "full"]


def test_all_without_the_baseline_in_all():
    p = plan.report_plan(config(MANY, baseline_in_all=False), "all")
    assert list(p["metrics"]) == ["drs:cam", "drs:refined", "drs:segmentation", "full:segmentation"]
    assert list(p["maps"]) == ["DRS", "refined"]
    assert p["labels"] == {"drs": "DRS", "full": "fully supervised"}
    assert p["baseline"] == "cam"  # the headline still names it (its metrics are not in this report)


def test_all_without_a_cam_baseline():
    p = plan.report_plan(config({"drs": DRS, "drs_fixed": FIXED}), "all")
    assert list(p["metrics"]) == ["drs:cam", "drs:refined", "drs:segmentation"]
    assert list(p["maps"]) == ["DRS", "refined"]
    assert p["baseline"] is None


def test_all_when_the_main_experiment_is_the_baseline():
    p = plan.report_plan(config({"cam": CAM, "drs": DRS}, main="cam"), "all")
    assert list(p["metrics"]) == ["cam:cam", "cam:refined", "cam:segmentation"]
    assert list(p["maps"]) == ["CAM", "refined"]


def test_all_with_given_labels_as_the_main_experiment():
    p = plan.report_plan(config(MANY, main="given"), "all")
    assert list(p["metrics"]) == [
        "cam:cam",
        "cam:refined",
        "cam:segmentation",
        "given:segmentation",
        "full:segmentation",
    ]
    assert list(p["maps"]) == ["CAM"]  # no maps of its own, no refined store
    assert p["pseudo_labels"] == "/labels/released"
    assert p["segmenter"] == "out/given/segmenter/model.pt"
    assert p["labels"]["given"] == "given labels (given)"


def test_ablation_groups_seeds_by_variant_baseline_first():
    p = plan.report_plan(config(MANY), "ablation")
    weak = [
        f"{e}:{s}" for e in ("cam", "cam_s1", "drs", "drs_s1", "drs_fixed") for s in ("cam", "refined", "segmentation")
    ]
    assert list(p["metrics"]) == [*weak, "given:segmentation", "full:segmentation", "full_s1:segmentation"]
    assert p["metrics"]["cam_s1:refined"] == "out/cam_s1/metrics/refined.json"
    assert list(p["maps"].items()) == [
        ("CAM", "out/cam/maps/trainaug.h5"),
        ("DRS", "out/drs/maps/trainaug.h5"),
        ("DRS (delta=0.55)", "out/drs_fixed/maps/trainaug.h5"),
        ("refined (DRS)", "out/drs/maps/trainaug_refined.h5"),
    ]
    assert plan.report_experiments(p) == ["cam", "cam_s1", "drs", "drs_s1", "drs_fixed", "given", "full", "full_s1"]


def test_ablation_titles_that_collide_fall_back_to_the_variant_name():
    c = config({"drs": DRS, "drs_b": DRS, "cam": CAM, "cam_b": CAM}, main="drs_b")
    p = plan.report_plan(c, "ablation")
    assert list(p["maps"]) == ["cam", "drs_b", "drs", "cam_b", "refined (DRS)"]
    assert p["maps"]["refined (DRS)"] == "out/drs_b/maps/trainaug_refined.h5"
    assert list(p["metrics"])[:3] == ["cam:cam", "cam:refined", "cam:segmentation"]
    assert list(p["metrics"])[3:6] == ["drs_b:cam", "drs_b:refined", "drs_b:segmentation"]


def test_a_dataset_folder_is_the_strip_dataset():
    c = dict(config({"drs": DRS}), dataset="folder", dataset_dir="/data/VOC2012")
    assert plan.report_plan(c, "all")["dataset"] == "/data/VOC2012"


def test_report_inputs_are_the_plan_files():
    p = plan.report_plan(config(MANY), "all")
    assert plan.report_inputs(p) == {
        "metrics": list(p["metrics"].values()),
        "stores": ["out/cam/maps/trainaug.h5", "out/drs/maps/trainaug.h5", "out/drs/maps/trainaug_refined.h5"],
        "pseudo_labels": "out/drs/pseudo_labels",
        "segmenter": "out/drs/segmenter/model.pt",
        "sweeps": ["out/cam/metrics/sweep.json", "out/drs/metrics/sweep.json"],  # so that `all` sweeps both
    }


def test_all_draws_the_histories_and_sweeps_of_its_experiments():
    p = plan.report_plan(config(MANY), "all")
    assert p["sweeps"] == {"CAM": "out/cam/metrics/sweep.json", "DRS": "out/drs/metrics/sweep.json"}
    assert p["histories"] == {
        f"{e}:{s}": f"out/{e}/{s}/history.csv"
        for e, stages in (("cam", "crs"), ("drs", "crs"), ("full", "s"))
        for s in [{"c": "classifier", "r": "refiner", "s": "segmenter"}[k] for k in stages]
    }
    given = plan.report_plan(config(MANY, main="given"), "all")
    assert given["sweeps"] == {"CAM": "out/cam/metrics/sweep.json"}  # given labels: nothing to sweep
    assert "given:classifier" not in given["histories"] and "given:segmenter" in given["histories"]


def test_unknown_scope():
    with pytest.raises(ValueError, match="'every'"):
        plan.report_plan(config(MANY), "every")
