# Stage 7: DeepLabV3+ predictions on the validation split, scored against its ground truth.


rule evaluate:
    input:
        model=res("{exp}/segmenter/model.pt"),
        check=DATASET_CHECK,
    output:
        predictions=directory(res(f"{{exp}}/predictions/{VAL_SPLIT}")),
        metrics=segmentation_metrics(),
    log:
        res("logs/evaluate/{exp}.log"),
    benchmark:
        res("benchmarks/evaluate/{exp}.tsv")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "evaluate"),
    params:
        dataset=DATASET,
        split=VAL_SPLIT,
        scales=[str(s) for s in config["evaluation"]["scales"]],
        flip=["--flip"] if config["evaluation"]["flip"] else [],
    shell:
        "OMP_NUM_THREADS={threads} python -m drs evaluate --model {input.model:q} "
        "--dataset {params.dataset:q} --split {params.split:q} "
        "--predictions {output.predictions:q} --out {output.metrics:q} "
        "--scales {params.scales:q} {params.flip:q} --experiment {wildcards.exp:q} > {log:q} 2>&1"
