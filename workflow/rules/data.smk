# Stage 1: the dataset, in PASCAL VOC layout (synthesized, downloaded, or an existing folder).


rule synthesize_dataset:
    output:
        directory(res(paths.DATASET, dataset="synthetic")),
    log:
        log_file("synthesize_dataset", None),
    # deterministic from its spec and the generator's code (both params): cacheable between
    # workflows (--cache; a cached rule may not have a benchmark)
    cache: between_workflow_cache()
    conda:
        DRS_ENV
    threads: job_threads("cpu_job")
    resources:
        **job_resources("cpu_job"),
    params:
        spec=json.dumps(config["synthetic"]),
        code=source_digest(
            "drs/data/synth.py", "drs/data/synth_spec.py", "drs/data/spline_zoom.py"
        ),
    shell:
        "python -m drs synth {output:q} --spec {params.spec:q} --workers {threads} > {log:q} 2>&1"


rule download_voc2012:
    output:
        directory(res(paths.DATASET, dataset="voc2012")),
    log:
        log_file("download_voc2012", None),
    # checksummed archives unpacked the same way: cacheable when every MD5 is pinned
    cache: between_workflow_cache(voc_archives_pinned())
    conda:
        DRS_ENV
    params:
        archives=json.dumps(config["voc2012"].get("archives", {})),
        downloads=res(paths.DOWNLOADS),
        code=source_digest("drs/data/download.py", "drs/data/archives.py"),
    shell:
        "python -m drs download {output:q} --archives {params.archives:q} "
        "--downloads {params.downloads:q} > {log:q} 2>&1"


rule check_dataset:
    input:
        DATASET,
    output:
        DATASET_CHECK,
    log:
        log_file("check_dataset", None),
    benchmark:
        benchmark_file("check_dataset", None)
    conda:
        DRS_ENV
    threads: job_threads("cpu_job")
    params:
        # saliency maps as the pseudo labels use them
        settings=section_settings("pseudo_labels"),
    shell:
        "python -m drs check-dataset {input:q} --json {output:q} --settings {params.settings:q} "
        "--workers {threads} > {log:q} 2>&1"


# Released weights the segmenters start from (the config's weights:, e.g. deeplabv1_coco: DeepLab-V2's
# COCO DeepLab-V1 start), checksummed as the archives are.
rule download_weights:
    output:
        res(paths.WEIGHTS, name="{name}"),
    log:
        log_file("download_weights", "{name}"),
    wildcard_constraints:
        name="|".join(config["weights"]) or "(?!x)x",
    cache: between_workflow_cache(all(w.get("md5") for w in config["weights"].values()))
    conda:
        DRS_ENV
    params:
        spec=lambda wildcards: json.dumps(config["weights"][wildcards.name]),
        code=source_digest("drs/data/download.py"),
    shell:
        "python -m drs download {output:q} --file {params.spec:q} --name {wildcards.name:q} > {log:q} 2>&1"
