# drs-wsss: Discriminative Region Suppression for weakly-supervised semantic segmentation.
# Thin by design: rules wire stages together and call the `drs` package, where the logic lives.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/maps.smk"


localrules:
    all,
    data,
    cams,
    check_dataset,
    eval_cam,
    compare_cams,


rule all:
    default_target: True
    input:
        DATASET_CHECK,
        res(f"{MAIN}/metrics/cam.json"),


rule data:
    input:
        DATASET_CHECK,


rule cams:
    input:
        res("drs_vs_cam.md"),
