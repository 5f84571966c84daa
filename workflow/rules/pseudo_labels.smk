# Stage 5: pseudo labels from the refined maps (object cues) and saliency (background cues).


rule pseudo_labels:
    input:
        store=refined_store(),
        check=DATASET_CHECK,
    output:
        directory(res("{exp}/pseudo_labels")),
    log:
        res("logs/pseudo_labels/{exp}.log"),
    benchmark:
        res("benchmarks/pseudo_labels/{exp}.tsv")
    conda:
        DRS_ENV
    threads: job_threads("cpu_job")
    resources:
        **job_resources("cpu_job"),
    params:
        dataset=DATASET,
        alpha=config["pseudo_labels"]["alpha"],
        saliency=config["pseudo_labels"]["saliency"],
        bg_threshold=config["pseudo_labels"]["bg_threshold"],
        conflict_score=config["pseudo_labels"]["conflict_score"],
        saliency_threshold=SALIENCY_THRESHOLD,
        missing_saliency=config["pseudo_labels"]["missing_saliency"],
    shell:
        "python -m drs pseudo-labels {input.store:q} --out {output:q} --dataset {params.dataset:q} "
        "--alpha {params.alpha:q} --saliency {params.saliency:q} "
        "--bg-threshold {params.bg_threshold:q} --conflict-score {params.conflict_score:q} "
        "--missing-saliency {params.missing_saliency:q} "
        "--saliency-threshold {params.saliency_threshold:q} --workers {threads} > {log:q} 2>&1"


rule eval_refined:
    input:
        labels=res("{exp}/pseudo_labels"),
        store=refined_store(),
        check=DATASET_CHECK,
    output:
        res("{exp}/metrics/refined.json"),
    log:
        res("logs/eval_refined/{exp}.log"),
    benchmark:
        res("benchmarks/eval_refined/{exp}.tsv")
    conda:
        DRS_ENV
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        alpha=config["pseudo_labels"]["alpha"],
        saliency=config["pseudo_labels"]["saliency"],
        bg_threshold=config["pseudo_labels"]["bg_threshold"],
        saliency_threshold=SALIENCY_THRESHOLD,
        missing_saliency=config["pseudo_labels"]["missing_saliency"],
        protocol=PROTOCOL_ARGS,
    shell:
        "python -m drs score-labels {input.labels:q} --dataset {params.dataset:q} "
        "--split {params.split:q} --out {output:q} --store {input.store:q} --alpha {params.alpha:q} "
        "--saliency {params.saliency:q} --bg-threshold {params.bg_threshold:q} "
        "--missing-saliency {params.missing_saliency:q} "
        "--saliency-threshold {params.saliency_threshold:q} {params.protocol:q} > {log:q} 2>&1"
