# Stage 7: DeepLabV3+ predictions on the validation split, scored against its ground truth.


rule evaluate:
    input:
        model=res(paths.SEGMENTER, checkpoint=EVAL_CHECKPOINT),
        check=DATASET_CHECK,
    output:
        predictions=directory(res(paths.PREDICTIONS, split=VAL_SPLIT)),
        metrics=res(paths.METRICS, stage="segmentation"),
    log:
        log_file("evaluate"),
    benchmark:
        benchmark_file("evaluate")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "evaluate"),
    params:
        dataset=DATASET,
        split=VAL_SPLIT,
        settings=section_settings("evaluation"),
    shell:
        "OMP_NUM_THREADS={threads} python -m drs evaluate --model {input.model:q} "
        "--dataset {params.dataset:q} --split {params.split:q} "
        "--predictions {output.predictions:q} --out {output.metrics:q} "
        "--settings {params.settings:q} --crf-workers {threads} "
        "--experiment {wildcards.exp:q} > {log:q} 2>&1"


# The PASCAL VOC test-server submission of the main experiment: predictions of test_split (a split
# without masks; VOC2012test's images must be in the dataset folder) in the server's layout
# results/VOC2012/Segmentation/comp6_test_cls/<id>.png, and the .tar.gz to upload. Whole images
# at the configured scales and flips (the reference crop is a val protocol), with the CRF if on.
rule test_submission:
    input:
        model=res(paths.SEGMENTER, checkpoint="model.pt"),
        check=DATASET_CHECK,
    output:
        archive=res(paths.SUBMISSION, split=TEST_SPLIT) + ".tar.gz",
        tree=directory(res(paths.SUBMISSION, split=TEST_SPLIT)),
        predictions=directory(res(paths.PREDICTIONS, split=TEST_SPLIT)),
        record=res(paths.SUBMISSION, split=TEST_SPLIT) + ".json",
    log:
        log_file("test_submission"),
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "test_submission"),
    params:
        dataset=DATASET,
        split=TEST_SPLIT,
        settings=section_settings("evaluation"),
    shell:
        "OMP_NUM_THREADS={threads} python -m drs evaluate --model {input.model:q} --dataset {params.dataset:q} "
        "--split {params.split:q} --predictions {output.predictions:q} --out {output.record:q} "
        "--settings {params.settings:q} --protocol full --crf-workers {threads} "
        "--submission {output.archive:q} --experiment {wildcards.exp:q} > {log:q} 2>&1"
