# Stage 2: the VGG-16 classifier with DRS modules (or none: the CAM baseline), per experiment.


rule train_classifier:
    input:
        check=DATASET_CHECK,
    output:
        res("{exp}/classifier/model.pt"),
    log:
        res("logs/train_classifier/{exp}.log"),
    benchmark:
        res("benchmarks/train_classifier/{exp}.tsv")
    conda:
        DRS_ENV
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        dataset=DATASET,
        split=TRAIN_SPLIT,
        drs=drs_args,
        settings=classifier_settings,
        out=lambda wildcards, output: Path(output[0]).parent,
    shell:
        "OMP_NUM_THREADS={threads} python -m drs train-classifier --dataset {params.dataset} --split {params.split} "
        "--out {params.out} {params.drs} --settings {params.settings:q} > {log} 2>&1"
