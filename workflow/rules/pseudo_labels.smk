# Stage 5: pseudo labels from the refined maps (object cues) and saliency (background cues).


rule pseudo_labels:
    input:
        store=res(paths.REFINED_MAPS, split=TRAIN_SPLIT),
        check=DATASET_CHECK,
    output:
        directory(res(paths.PSEUDO_LABELS)),
    log:
        log_file("pseudo_labels"),
    benchmark:
        benchmark_file("pseudo_labels")
    conda:
        DRS_ENV
    threads: job_threads("cpu_job")
    resources:
        **job_resources("cpu_job"),
    params:
        dataset=DATASET,
        settings=section_settings("pseudo_labels"),
    shell:
        "python -m drs pseudo-labels {input.store:q} --out {output:q} --dataset {params.dataset:q} "
        "--settings {params.settings:q} --workers {threads} > {log:q} 2>&1"


rule score_labels:
    input:
        labels=res(paths.PSEUDO_LABELS),
        store=res(paths.REFINED_MAPS, split=TRAIN_SPLIT),
        check=DATASET_CHECK,
    output:
        res(paths.METRICS, stage="refined"),
    log:
        log_file("score_labels"),
    benchmark:
        benchmark_file("score_labels")
    conda:
        DRS_ENV
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        settings=section_settings("pseudo_labels"),
    shell:
        "python -m drs score-labels {input.labels:q} --dataset {params.dataset:q} "
        "--split {params.split:q} --out {output:q} --store {input.store:q} "
        "--settings {params.settings:q} > {log:q} 2>&1"


# The pseudo-label rule over grids of alpha and the saliency threshold, from the store the
# experiment's pseudo labels are made from (the CAM baseline's too: its refined store), in one
# pass and without retraining; not in rule all (a target by name: results/{exp}/metrics/sweep.json).
rule sweep_labels:
    input:
        store=res(paths.REFINED_MAPS, split=TRAIN_SPLIT),
        check=DATASET_CHECK,
    output:
        res(paths.SWEEP),
    log:
        log_file("sweep_labels"),
    benchmark:
        benchmark_file("sweep_labels")
    conda:
        DRS_ENV
    threads: job_threads("cpu_job")
    resources:
        **job_resources("cpu_job"),
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        settings=section_settings("pseudo_labels"),
    shell:
        "python -m drs sweep-labels {input.store:q} --dataset {params.dataset:q} "
        "--split {params.split:q} --out {output:q} --settings {params.settings:q} "
        "--workers {threads} > {log:q} 2>&1"
