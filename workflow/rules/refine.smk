# Stage 4: localization-map refinement learning, and the refined maps.


rule train_refiner:
    input:
        store=res(paths.MAPS, split=TRAIN_SPLIT),
        check=DATASET_CHECK,
    output:
        res(paths.REFINER),
    log:
        log_file("train_refiner"),
    benchmark:
        benchmark_file("train_refiner")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "train_refiner"),
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        settings=section_settings("refiner"),
        out=lambda wildcards, output: Path(output[0]).parent,
        launch=launcher("train_refiner"),
    shell:
        "{params.launch} train-refiner "
        + TENSORBOARD
        + "--dataset {params.dataset:q} "
        "--split {params.split:q} --store {input.store:q} --out {params.out:q} "
        "--settings {params.settings:q} > {log:q} 2>&1"


rule extract_refined_maps:
    input:
        model=res(paths.REFINER),
        check=DATASET_CHECK,
    output:
        res(paths.REFINED_MAPS),
    log:
        log_file("extract_refined_maps", "{exp}_{split}"),
    benchmark:
        benchmark_file("extract_refined_maps", "{exp}_{split}")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "extract_refined_maps"),
    params:
        dataset=DATASET,
        settings=section_settings("maps"),
        launch=launcher("extract_refined_maps"),
    shell:
        "{params.launch} extract-maps --model {input.model:q} "
        "--dataset {params.dataset:q} --split {wildcards.split:q} --out {output:q} "
        "--settings {params.settings:q} > {log:q} 2>&1"
