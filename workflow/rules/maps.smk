# Stage 3: localization maps into HDF5 map stores, and their quality as pseudo labels (cam.json).


rule extract_maps:
    input:
        model=res("{exp}/classifier/model.pt"),
        check=DATASET_CHECK,
    output:
        res("{exp}/maps/{split}.h5"),
    log:
        res("logs/extract_maps/{exp}_{split}.log"),
    benchmark:
        res("benchmarks/extract_maps/{exp}_{split}.tsv")
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
        store=train_store(),
        check=DATASET_CHECK,
    output:
        cam_metrics(),
    log:
        res("logs/eval_maps/{exp}.log"),
    benchmark:
        res("benchmarks/eval_maps/{exp}.tsv")
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
        metrics=[cam_metrics(e) for e in WEAK_EXPERIMENTS],
        stores=[train_store(e) for e in VARIANT_FIRST_RUNS],
    output:
        table=res("drs_vs_cam.md"),
        figure=report(
            res("drs_vs_cam.png"),
            caption="../report/drs_vs_cam.rst",
            category="Pictures",
            labels={"picture": "CAM vs DRS maps of each variant"},
        ),
    log:
        res("logs/compare_cams.log"),
    benchmark:
        res("benchmarks/compare_cams.tsv")
    conda:
        DRS_ENV
    params:
        runs=[f"{e}={cam_metrics(e)}" for e in WEAK_EXPERIMENTS],
        stores=[f"{variant_of(e)}={train_store(e)}" for e in VARIANT_FIRST_RUNS],
    shell:
        "python -m drs compare --runs {params.runs:q} --out {output.table:q} "
        "--stores {params.stores:q} --figure {output.figure:q} > {log:q} 2>&1"
