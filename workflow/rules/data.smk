# Stage 1: the dataset, in PASCAL VOC layout (synthesized, downloaded, or an existing folder).


rule synthesize_dataset:
    output:
        directory("results/data/synthetic"),
    log:
        "results/logs/synthesize_dataset.log",
    benchmark:
        "results/benchmarks/synthesize_dataset.tsv"
    conda:
        DRS_ENV
    threads: workflow.cores
    params:
        spec=json.dumps(config["synthetic"]),
    shell:
        "python -m drs synth {output} --spec {params.spec:q} --workers {threads} > {log} 2>&1"


rule download_voc2012:
    output:
        directory("results/data/voc2012"),
    log:
        "results/logs/download_voc2012.log",
    benchmark:
        "results/benchmarks/download_voc2012.tsv"
    conda:
        DRS_ENV
    params:
        archives=json.dumps(config["voc2012"].get("archives", {})),
        downloads="results/downloads",
    shell:
        "python -m drs download {output} --archives {params.archives:q} --downloads {params.downloads} > {log} 2>&1"


rule check_dataset:
    input:
        DATASET,
    output:
        DATASET_CHECK,
    log:
        "results/logs/check_dataset.log",
    benchmark:
        "results/benchmarks/check_dataset.tsv"
    conda:
        DRS_ENV
    threads: workflow.cores
    shell:
        "python -m drs check-dataset {input} --json {output} --workers {threads} > {log} 2>&1"
