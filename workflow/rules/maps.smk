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
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        dataset=DATASET,
        options=MAPS_OPTIONS,
    shell:
        "OMP_NUM_THREADS={threads} python -m drs extract-maps --model {input.model} --dataset {params.dataset} "
        "--split {wildcards.split} --out {output} {params.options} > {log} 2>&1"


rule eval_cam:
    input:
        store=train_store(),
        check=DATASET_CHECK,
    output:
        cam_metrics(),
    log:
        res("logs/eval_cam/{exp}.log"),
    benchmark:
        res("benchmarks/eval_cam/{exp}.tsv")
    conda:
        DRS_ENV
    params:
        dataset=DATASET,
        alpha=config["pseudo_labels"]["alpha"],
        saliency=config["pseudo_labels"]["saliency"],
        bg_threshold=config["pseudo_labels"]["bg_threshold"],
        conflict_score=config["pseudo_labels"]["conflict_score"],
    shell:
        "python -m drs eval-maps {input.store} --dataset {params.dataset} --out {output} "
        "--alpha {params.alpha} --saliency {params.saliency} --bg-threshold {params.bg_threshold} "
        "--conflict-score {params.conflict_score} > {log} 2>&1"


rule compare_cams:
    input:
        metrics=[cam_metrics(e) for e in EXPERIMENTS],
        stores=[train_store(e) for e in VARIANT_FIRST_RUNS],
    output:
        table=res("drs_vs_cam.md"),
        figure=res("drs_vs_cam.png"),
    log:
        res("logs/compare_cams.log"),
    benchmark:
        res("benchmarks/compare_cams.tsv")
    conda:
        DRS_ENV
    params:
        runs=" ".join(f"{e}={cam_metrics(e)}" for e in EXPERIMENTS),
        stores=" ".join(f"{variant_of(e)}={train_store(e)}" for e in VARIANT_FIRST_RUNS),
    shell:
        "python -m drs compare --runs {params.runs} --out {output.table} "
        "--stores {params.stores} --figure {output.figure} > {log} 2>&1"
