# Stage 6: the segmenter on an experiment's pseudo labels, or on the ground-truth masks for an
# experiment with supervision: full (the fully-supervised reference): DeepLabV3+ (config section
# segmenter), or DeepLab-V2 for an experiment with segmenter: {architecture: deeplabv2} (section
# deeplabv2, from the COCO weights that rule download_weights fetches).


rule train_segmenter:
    input:
        labels=segmenter_labels,
        weights=segmenter_weights,
        check=DATASET_CHECK,
    output:
        res(paths.SEGMENTER, checkpoint="model.pt"),
        # with segmenter.val_every: the model best on val_split too
        *(
            [res(paths.SEGMENTER, checkpoint="best.pt")]
            if config["segmenter"]["val_every"]
            else []
        ),
    log:
        log_file("train_segmenter"),
    benchmark:
        benchmark_file("train_segmenter")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "train_segmenter"),
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        labels=lambda wildcards, input: input.labels or "ground-truth",
        settings=segmenter_settings,
        architecture=lambda wildcards: plan.architecture(config, wildcards.exp),
        out=lambda wildcards, output: Path(output[0]).parent,
        launch=launcher("train_segmenter"),
    shell:
        "{params.launch} train-segmenter "
        + TENSORBOARD
        + "--dataset {params.dataset:q} "
        "--split {params.split:q} --labels {params.labels:q} --out {params.out:q} "
        "--architecture {params.architecture:q} --settings {params.settings:q} > {log:q} 2>&1"
