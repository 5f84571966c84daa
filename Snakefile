# drs-wsss: Discriminative Region Suppression for weakly-supervised semantic segmentation.
# Thin by design: rules wire stages together and call the `drs` package, where the logic lives.


from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default run; a --configfile replaces it (rather than being merged into it),
# so a config such as config/study.yaml defines its experiments alone.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/pseudo_labels.smk"


localrules:
    all,
    data,
    cams,
    check_dataset,
    eval_cam,
    compare_cams,
    eval_refined,


rule all:
    default_target: True
    input:
        DATASET_CHECK,
        cam_metrics(MAIN),
        res(f"{MAIN}/metrics/refined.json"),


rule data:
    input:
        DATASET_CHECK,


rule cams:
    input:
        res("drs_vs_cam.md"),
