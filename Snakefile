# drs-wsss: Discriminative Region Suppression for weakly-supervised semantic segmentation.
# Thin by design: rules wire stages together and call the `drs` package, where the logic lives.


import os
import sys

from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default run; a --configfile replaces it (rather than being merged into it),
# so a config such as config/study.yaml defines its experiments alone.
# A YAML syntax error in it is reported with its file and line (Snakemake's own message names
# neither); drs.config.load_yaml reads it first.
if not workflow.overwrite_configfiles:
    sys.path.insert(0, workflow.basedir)
    from drs.config.workflow import load_yaml
    from drs.errors import UserError

    if os.path.exists("config.yaml"):  # as `configfile:`, from the working directory
        try:
            load_yaml("config.yaml")
        except UserError as err:
            raise WorkflowError(f"invalid configuration:\n{err}") from None

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/report_helpers.smk"
include: "workflow/rules/segmenter_helpers.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/imported.smk"
include: "workflow/rules/pseudo_labels.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Run where Snakemake runs, never submitted to a cluster: targets, the VOC download (compute nodes
# often have no internet), and small reads and aggregations. Every other rule declares its
# threads and resources (workflow/rules/resources.smk: job_threads, job_resources).
localrules:
    all,
    data,
    cams,
    download_voc2012,
    check_dataset,
    eval_maps,
    compare_cams,
    score_labels,
    ablation,
    deeplabv2,
    download_weights,
    import_classifier,
    import_refiner,
    voc_test_submission,


# The main experiment end to end (classifier, maps, refinement, pseudo labels, DeepLabV3+,
# evaluation), the fully supervised reference, the CAM baseline's maps, and the report's files
# (with report.deeplabv2_in_all, target deeplabv2's too); then
# `snakemake --report results/report.html` builds the HTML report.
rule all:
    default_target: True
    input:
        DATASET_CHECK,
        res(paths.SUMMARY),
        # report.deeplabv2_in_all: target deeplabv2 too
        res(paths.DEEPLABV2_SUMMARY) if config["report"]["deeplabv2_in_all"] else [],


# Every experiment end to end and their comparison (results/ablation/summary.md).
rule ablation:
    input:
        res(paths.ABLATION_SUMMARY),
        res(paths.COMPARISON) + ".md",


# DeepLab-V2 (the network behind the paper's 71.4%) on the main experiment's pseudo labels and on
# the ground truth: the experiments with segmenter: {architecture: deeplabv2}, and their report.
rule deeplabv2:
    input:
        res(paths.DEEPLABV2_SUMMARY),


rule data:
    input:
        DATASET_CHECK,


rule cams:
    input:
        res(paths.COMPARISON) + ".md",


# The PASCAL VOC test-server archive of the main experiment (evaluation.test_split: a split
# without masks; workflow/rules/evaluate.smk, rule test_submission).
rule voc_test_submission:
    input:
        res(paths.SUBMISSION, exp=MAIN, split=TEST_SPLIT) + ".tar.gz",
