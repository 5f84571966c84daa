# drs-wsss: Discriminative Region Suppression for weakly-supervised semantic segmentation.
# Thin by design: rules wire stages together and call the `drs` package, where the logic lives.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


localrules:
    all,
    data,
    check_dataset,


rule all:
    default_target: True
    input:
        DATASET_CHECK,


rule data:
    input:
        DATASET_CHECK,
