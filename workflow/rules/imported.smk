# Stages 2 and 4 from the authors' released weights: an experiment naming classifier_weights or
# refiner_weights (checkpoints in the reference's layout) gets them converted by
# `drs import-weights` instead of trained; everything downstream runs unchanged. An experiment
# naming pseudo_labels_dir needs neither (segmenter_helpers.smk: segmenter_labels).


ruleorder: import_classifier > train_classifier
ruleorder: import_refiner > train_refiner


rule import_classifier:
    input:
        weights=lambda wildcards: EXPERIMENTS[wildcards.exp]["classifier_weights"],
        check=DATASET_CHECK,
    output:
        res(paths.CLASSIFIER),
    log:
        log_file("import_classifier"),
    wildcard_constraints:
        exp=experiments_with("classifier_weights"),
    conda:
        DRS_ENV
    params:
        dataset=DATASET,
        drs=drs_args,
        out=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "python -m drs import-weights classifier {input.weights:q} {params.out:q} {params.drs:q} "
        "--dataset {params.dataset:q} > {log:q} 2>&1"


rule import_refiner:
    input:
        weights=lambda wildcards: EXPERIMENTS[wildcards.exp]["refiner_weights"],
        check=DATASET_CHECK,
    output:
        res(paths.REFINER),
    log:
        log_file("import_refiner"),
    wildcard_constraints:
        exp=experiments_with("refiner_weights"),
    conda:
        DRS_ENV
    params:
        dataset=DATASET,
        out=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "python -m drs import-weights refiner {input.weights:q} {params.out:q} "
        "--dataset {params.dataset:q} > {log:q} 2>&1"
