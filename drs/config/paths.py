"""Every path the workflow makes, one template each, relative to the config's ``results_dir``.

The rules (``workflow/rules/*.smk``) and the report's plan (:mod:`drs.config.plan`) both build their
paths from these templates, so that a path is written in one place. A template's ``{fields}`` are
filled by :func:`fill`; the fields it is not given stay as they are: Snakemake's wildcards.
"""

from __future__ import annotations

import string

DATASET = "data/{dataset}"  # a dataset the workflow builds (synthetic) or downloads (voc2012)
DATASET_CHECK = "data/dataset_check.json"
DOWNLOADS = "downloads"
WEIGHTS = "downloads/weights/{name}.pth"  # a released file of the config's weights:
CLASSIFIER = "{exp}/classifier/model.pt"
REFINER = "{exp}/refiner/model.pt"
SEGMENTER = "{exp}/segmenter/{checkpoint}"  # model.pt (the last) or best.pt (best on val)
HISTORY = "{exp}/{stage}/history.csv"  # stage: classifier, refiner, segmenter (drs.training.history)
MAPS = "{exp}/maps/{split}.h5"
REFINED_MAPS = "{exp}/maps/{split}_refined.h5"
PSEUDO_LABELS = "{exp}/pseudo_labels"
METRICS = "{exp}/metrics/{stage}.json"  # stage: cam, refined, segmentation
SWEEP = "{exp}/metrics/sweep.json"  # drs sweep-labels: the pseudo-label rule over alpha and saliency grids
PREDICTIONS = "{exp}/predictions/{split}"
SUBMISSION = "{exp}/submission/{split}"  # the test-server tree; .tar.gz and .json beside it
SUMMARY = "summary.md"
REPORT = "report"
ABLATION_SUMMARY = "ablation/summary.md"
ABLATION_REPORT = "ablation/report"
DEEPLABV2_SUMMARY = "deeplabv2/summary.md"
DEEPLABV2_REPORT = "deeplabv2/report"
COMPARISON = "drs_vs_cam"  # .md (the table) and .png (the picture)
LOG = "logs/{name}.log"  # name: RULE/JOB, or RULE for a rule of one job
BENCHMARK = "benchmarks/{name}.tsv"

#: the checkpoint file of each evaluation.checkpoint choice
CHECKPOINT_FILES = {"last": "model.pt", "best_on_val": "best.pt"}


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **fields) -> str:
    """``template`` with the ``fields`` given filled in; any other ``{field}`` is left as it is."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise KeyError(f"path template {template!r} has no field(s) {unknown}")
    return template.format_map(_Keep(fields))


def under(config: dict, template: str, **fields) -> str:
    """:func:`fill` of ``template`` under the config's results folder."""
    return f"{config['results_dir']}/{fill(template, **fields)}"
