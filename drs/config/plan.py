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

SCOPES = ("all", "ablation")


STAGES = ("cam", "refined", "segmentation")


SEED_SUFFIX = re.compile(r"_s\d+$")


def variant_of(name: str) -> str:
    return SEED_SUFFIX.sub("", name)


def fully_supervised(config: dict, exp: str) -> bool:
    """Whether an experiment trains DeepLabV3+ on ground-truth masks (no classifier, no maps)."""
    return config["experiments"][exp].get("supervision", "image") == "full"


def given_labels(config: dict, exp: str) -> str | None:
    """The folder of ready pseudo labels an experiment names (pseudo_labels_dir), or None."""
    return config["experiments"][exp].get("pseudo_labels_dir")


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
    if given_labels(config, exp):
        return f"given labels ({exp})"
    spec = config["experiments"][exp]
    kind = spec.get("drs")
    if kind == "none":
        return "CAM"
    if kind == "fixed":
        return f"DRS (delta={spec['delta']})"
    return "DRS"


def report_plan(config: dict, scope: str) -> dict:
    """What a report covers, as the object `drs report --plan` reads.

    Scope "all" is the main experiment (with the CAM baseline's maps, if report.baseline_in_all,
    and the first fully supervised experiment beside it), "ablation" every experiment. The CAM
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
    if scope == "all":
        weak = list(dict.fromkeys(first if config["report"]["baseline_in_all"] else [main]))
        full = full_experiments(config)[:1]
        map_columns = [e for e in weak if not given_labels(config, e)]
    else:
        # grouped by variant (runs differing only by a trailing _s<seed>)
        variants = list(dict.fromkeys(variant_of(e) for e in first + weak_runs))
        rank = lambda e: variants.index(variant_of(e))  # noqa: E731
        weak = sorted(weak_runs, key=rank) + label_experiments(config)
        full = full_experiments(config)
        map_columns = sorted(variant_first_runs(config), key=rank)
    metrics = {}
    for exp in weak:
        # every stage in the ablation and of the main experiment (only DeepLabV3+ on given labels);
        # the classifier's maps of the others ("all": the CAM baseline, never a given-labels one)
        stages = ("segmentation",) if given_labels(config, exp) else STAGES
        for stage in stages if scope == "ablation" or exp == main else ("cam",):
            metrics[f"{exp}:{stage}"] = paths.under(config, paths.METRICS, exp=exp, stage=stage)
    for exp in full:
        metrics[f"{exp}:segmentation"] = paths.under(config, paths.METRICS, exp=exp, stage="segmentation")
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
        "segmenter": paths.under(config, paths.SEGMENTER, exp=main, checkpoint="model.pt"),
        "dataset": str(dataset_root(config)),
        "split": config["train_split"],
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
    }
