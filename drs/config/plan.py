"""What a run covers, as pure functions of the (validated) config: the experiment classes the
workflow's rules are built from, and the plan of a report (which metrics, map stores, pseudo
labels and segmenter `drs report` reads, and how the tables name each experiment).

The Snakefile calls these (workflow/rules/common.smk) and hands a report's plan to `drs report
--plan JSON` as one object; they need no Snakemake, so tests call them directly. Paths are under
the config's ``results_dir``, written as the rules write them.
"""

from __future__ import annotations

import re

from drs.config import paths
from drs.config.workflow import dataset_root

SCOPES = ("all", "ablation", "deeplabv2")
STAGES = ("cam", "refined", "segmentation")
SEED_SUFFIX = re.compile(r"_s\d+$")


def variant_of(name: str) -> str:
    return SEED_SUFFIX.sub("", name)


def fully_supervised(config: dict, exp: str) -> bool:
    """Whether an experiment trains DeepLabV3+ on ground-truth masks (no classifier, no maps)."""
    return config["experiments"][exp].get("supervision", "image") == "full"


def given_labels(config: dict, exp: str) -> str | None:
    """The folder of ready pseudo labels an experiment learns from (pseudo_labels_dir, or the
    pseudo labels of the experiment pseudo_labels_from names), or None."""
    spec = config["experiments"][exp]
    if "pseudo_labels_from" in spec:
        return paths.under(config, paths.PSEUDO_LABELS, exp=spec["pseudo_labels_from"])
    return spec.get("pseudo_labels_dir")


def architecture(config: dict, exp: str) -> str:
    """An experiment's segmenter: deeplabv3plus (the default) or deeplabv2."""
    return (config["experiments"][exp].get("segmenter") or {}).get("architecture", "deeplabv3plus")


def segmenter_section(config: dict, exp: str) -> str:
    """The config section of an experiment's segmenter settings (segmenter or deeplabv2)."""
    return "deeplabv2" if architecture(config, exp) == "deeplabv2" else "segmenter"


def label_experiments(config: dict) -> list[str]:
    """Experiments that learn DeepLabV3+ from given pseudo labels (no classifier, maps or refiner)."""
    return [e for e in config["experiments"] if given_labels(config, e)]


def weak_experiments(config: dict) -> list[str]:
    """Experiments with a classifier and maps (image-level labels)."""
    return [e for e in config["experiments"] if not fully_supervised(config, e) and not given_labels(config, e)]


def full_experiments(config: dict) -> list[str]:
    """Fully supervised experiments (DeepLabV3+ on the ground truth)."""
    return [e for e in config["experiments"] if fully_supervised(config, e)]


def cam_baseline(config: dict) -> str | None:
    """The plain-CAM baseline (drs: none) the main experiment is compared with, if any."""
    return next((e for e in weak_experiments(config) if config["experiments"][e].get("drs") == "none"), None)


def variant_first_runs(config: dict) -> list[str]:
    """One run per variant (experiments differing only by a trailing _s<seed>), the first of each,
    in the order of the variants' first runs: the map stores drawn for a set of seeds."""
    return list({variant_of(e): e for e in reversed(weak_experiments(config))}.values())[::-1]


def train_store(config: dict, exp: str) -> str:
    """The map store of an experiment's training split."""
    return paths.under(config, paths.MAPS, exp=exp, split=config["train_split"])


def refined_store(config: dict, exp: str) -> str:
    """The refined map store of an experiment's training split."""
    return paths.under(config, paths.REFINED_MAPS, exp=exp, split=config["train_split"])


def method_label(config: dict, exp: str) -> str:
    """An experiment's method as the tables name it."""
    if fully_supervised(config, exp):
        return "fully supervised"
    spec = config["experiments"][exp]
    if "pseudo_labels_from" in spec:
        return method_label(config, spec["pseudo_labels_from"])
    if given_labels(config, exp):
        return f"given labels ({exp})"
    kind = spec.get("drs")
    if kind == "none":
        return "CAM"
    if kind == "fixed":
        return f"DRS (delta={spec['delta']})"
    return "DRS"


def report_plan(config: dict, scope: str) -> dict:
    """What a report covers, as the object `drs report --plan` reads.

    Scope "all" is the main experiment (with the CAM baseline end to end, if report.baseline_in_all,
    and the first fully supervised experiment of its architecture beside it), "ablation" every
    experiment, "deeplabv2" the main experiment's pseudo labels and every DeepLab-V2 experiment. The CAM
    baseline comes first, then the main experiment, then the others. Keys: ``metrics`` ("EXP:STAGE"
    -> metrics file, in table order), ``labels`` (experiment -> method name), ``main``,
    ``baseline`` (or None), ``maps`` (strip column title -> map store), ``pseudo_labels``,
    ``segmenter``, ``dataset`` and ``split`` (the strip images).
    """
    if scope not in SCOPES:
        raise ValueError(f"report scope {scope!r}: expected one of {', '.join(SCOPES)}")
    main = config["main_experiment"]
    baseline = cam_baseline(config)
    weak_runs = weak_experiments(config)
    first = [e for e in (baseline, main) if e]
    segmenter = main
    if scope == "all":
        weak = list(dict.fromkeys(first if config["report"]["baseline_in_all"] else [main]))
        full = [e for e in full_experiments(config) if architecture(config, e) == architecture(config, main)][:1]
        map_columns = [e for e in weak if not given_labels(config, e)]
    elif scope == "deeplabv2":
        deeplab = [e for e in config["experiments"] if architecture(config, e) == "deeplabv2"]
        weak = [main] + [e for e in deeplab if not fully_supervised(config, e)]
        full = [e for e in deeplab if fully_supervised(config, e)]
        map_columns = [] if given_labels(config, main) else [main]
        segmenter = next((e for e in weak[1:]), main)
    else:
        # grouped by variant (runs differing only by a trailing _s<seed>)
        variants = list(dict.fromkeys(variant_of(e) for e in first + weak_runs))
        rank = lambda e: variants.index(variant_of(e))  # noqa: E731
        weak = sorted(weak_runs, key=rank) + label_experiments(config)
        full = full_experiments(config)
        map_columns = sorted(variant_first_runs(config), key=rank)
    metrics = {}
    for exp in weak:
        # every stage (only DeepLabV3+ on given labels); in "all" the CAM baseline runs end to end
        # too, so that the report can say whether DRS beat CAM at every stage, the segmenter's included
        stages = ("segmentation",) if given_labels(config, exp) else STAGES
        if scope == "deeplabv2" and exp == main:
            stages = ("cam", "refined") if not given_labels(config, exp) else ()
        for stage in stages:
            metrics[f"{exp}:{stage}"] = paths.under(config, paths.METRICS, exp=exp, stage=stage)
    for exp in full:
        metrics[f"{exp}:segmentation"] = paths.under(config, paths.METRICS, exp=exp, stage="segmentation")
    histories = {}
    for exp in report_experiments({"metrics": metrics}):
        spec = config["experiments"][exp]
        trained = [] if fully_supervised(config, exp) or given_labels(config, exp) else ["classifier", "refiner"]
        trained = [s for s in trained if f"{s}_weights" not in spec]  # imported models have no history
        for stage in [*trained, "segmenter"]:
            if stage != "segmenter" or f"{exp}:segmentation" in metrics:
                histories[f"{exp}:{stage}"] = paths.under(config, paths.HISTORY, exp=exp, stage=stage)
    # threshold curves (drs sweep-labels) of the methods whose pseudo labels the report scores
    swept = [e for e in dict.fromkeys([baseline, main] if scope != "ablation" else weak) if e in weak]
    sweeps = {
        method_label(config, e): paths.under(config, paths.SWEEP, exp=e)
        for e in swept
        if f"{e}:refined" in metrics and not given_labels(config, e)
    }
    titles = [method_label(config, e) for e in map_columns]
    maps = {(t if titles.count(t) == 1 else variant_of(e)): train_store(config, e) for t, e in zip(titles, map_columns)}
    if not given_labels(config, main):
        maps["refined" if scope == "all" else f"refined ({method_label(config, main)})"] = refined_store(config, main)
    return {
        "metrics": metrics,
        "labels": {e: method_label(config, e) for e in report_experiments({"metrics": metrics})},
        "main": main,
        "baseline": baseline,
        "maps": maps,
        "pseudo_labels": given_labels(config, main) or paths.under(config, paths.PSEUDO_LABELS, exp=main),
        "segmenter": paths.under(config, paths.SEGMENTER, exp=segmenter, checkpoint="model.pt"),
        "dataset": str(dataset_root(config)),
        "split": config["train_split"],
        "published": list(config["report"].get("published") or []),
        "histories": histories,
        "sweeps": sweeps,
    }


def report_experiments(plan: dict) -> list[str]:
    """The experiments a plan has metrics of (one per-class table each), in table order."""
    return list(dict.fromkeys(key.split(":")[0] for key in plan["metrics"]))


def report_inputs(plan: dict) -> dict:
    """The files a report of this plan reads, by kind (a rule's input)."""
    return {
        "metrics": list(plan["metrics"].values()),
        "stores": list(plan["maps"].values()),
        "pseudo_labels": plan["pseudo_labels"],
        "segmenter": plan["segmenter"],
        "sweeps": list(plan.get("sweeps", {}).values()),
    }
