# Stage 2: the VGG-16 classifier with DRS modules (or none: the CAM baseline), per experiment.


rule train_classifier:
    input:
        check=DATASET_CHECK,
    output:
        res(paths.CLASSIFIER),
    log:
        log_file("train_classifier"),
    benchmark:
        benchmark_file("train_classifier")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "train_classifier"),
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        drs=drs_args,
        settings=experiment_settings("classifier"),
        out=lambda wildcards, output: Path(output[0]).parent,
        launch=launcher("train_classifier"),
    shell:
        "{params.launch} train-classifier "
        + TENSORBOARD
        + "--dataset {params.dataset:q} "
        "--split {params.split:q} --out {params.out:q} {params.drs:q} --settings {params.settings:q} "
        "> {log:q} 2>&1"
