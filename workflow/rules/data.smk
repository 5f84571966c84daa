# Stage 1: the dataset, in PASCAL VOC layout (synthesized, downloaded, or an existing folder).


rule synthesize_dataset:
    output:
        directory(res("data/synthetic")),
    log:
        res("logs/synthesize_dataset.log"),
    benchmark:
        res("benchmarks/synthesize_dataset.tsv")
    conda:
        DRS_ENV
    threads: workflow.cores
    params:
        spec=json.dumps(config["synthetic"]),
    shell:
        "python -m drs synth {output} --spec {params.spec:q} --workers {threads} > {log} 2>&1"


rule download_voc2012:
    output:
        directory(res("data/voc2012")),
    log:
        res("logs/download_voc2012.log"),
    benchmark:
        res("benchmarks/download_voc2012.tsv")
    conda:
        DRS_ENV
    params:
        archives=json.dumps(config["voc2012"].get("archives", {})),
        downloads=res("downloads"),
    shell:
        "python -m drs download {output} --archives {params.archives:q} --downloads {params.downloads} > {log} 2>&1"


rule check_dataset:
    input:
        DATASET,
    output:
        DATASET_CHECK,
    log:
        res("logs/check_dataset.log"),
    benchmark:
        res("benchmarks/check_dataset.tsv")
    conda:
        DRS_ENV
    threads: workflow.cores
    shell:
        "python -m drs check-dataset {input} --json {output} --workers {threads} > {log} 2>&1"
