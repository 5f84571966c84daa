# Stage 3: localization maps into HDF5 map stores, and their quality as pseudo labels (cam.json).


rule extract_maps:
    input:
        model=res(paths.CLASSIFIER),
        check=DATASET_CHECK,
    output:
        res(paths.MAPS),
    log:
        log_file("extract_maps", "{exp}_{split}"),
    benchmark:
        benchmark_file("extract_maps", "{exp}_{split}")
    conda:
        DRS_ENV
    threads: job_threads("gpu_job")
    resources:
        **job_resources("gpu_job", "extract_maps"),
    params:
        dataset=DATASET,
        settings=section_settings("maps"),
        launch=launcher("extract_maps"),
    shell:
        "{params.launch} extract-maps --model {input.model:q} --dataset {params.dataset:q} "
        "--split {wildcards.split:q} --out {output:q} --settings {params.settings:q} > {log:q} 2>&1"


rule eval_maps:
    input:
        store=res(paths.MAPS, split=TRAIN_SPLIT),
        check=DATASET_CHECK,
    output:
        res(paths.METRICS, stage="cam"),
    log:
        log_file("eval_maps"),
    benchmark:
        benchmark_file("eval_maps")
    conda:
        DRS_ENV
    params:
        dataset=DATASET,
        settings=section_settings("pseudo_labels"),
    shell:
        "python -m drs eval-maps {input.store:q} --dataset {params.dataset:q} --out {output:q} "
        "--settings {params.settings:q} > {log:q} 2>&1"


rule compare_cams:
    input:
        metrics=[res(paths.METRICS, exp=e, stage="cam") for e in WEAK_EXPERIMENTS],
        stores=[res(paths.MAPS, exp=e, split=TRAIN_SPLIT) for e in VARIANT_FIRST_RUNS],
    output:
        table=res(paths.COMPARISON) + ".md",
        figure=report(
            res(paths.COMPARISON) + ".png",
            caption="../report/drs_vs_cam.rst",
            category="Pictures",
            labels={"picture": "CAM vs DRS maps of each variant"},
        ),
    log:
        log_file("compare_cams", None),
    benchmark:
        benchmark_file("compare_cams", None)
    conda:
        DRS_ENV
    params:
        runs=[f"{e}={res(paths.METRICS, exp=e, stage='cam')}" for e in WEAK_EXPERIMENTS],
        stores=[
            f"{plan.variant_of(e)}={res(paths.MAPS, exp=e, split=TRAIN_SPLIT)}"
            for e in VARIANT_FIRST_RUNS
        ],
    shell:
        "python -m drs compare --runs {params.runs:q} --out {output.table:q} "
        "--stores {params.stores:q} --figure {output.figure:q} > {log:q} 2>&1"
