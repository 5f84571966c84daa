# Stage 7: the report. `drs report` turns the stages' metrics, map stores, pseudo labels and the
# segmenter into tables, a per-class chart, picture strips and results/summary.md; the outputs are
# marked for `snakemake --report`. Two scopes: `summary` (the main experiment end to end, for `all`)
# and `ablation_summary` (every experiment, under results/ablation/). What each covers:
# drs.config.plan.report_plan, handed to `drs report --plan` as one JSON object.


# the front page of the HTML report
report: "../report/workflow.rst"


localrules:
    summary,
    ablation_summary,
    deeplabv2_summary,


rule summary:
    input:
        **report_inputs("all"),
    output:
        **report_outputs(res(paths.REPORT), "all"),
        summary=res(paths.SUMMARY),
    log:
        log_file("summary", None),
    benchmark:
        benchmark_file("summary", None)
    conda:
        DRS_ENV
    params:
        plan=report_plan_json("all"),
        out_dir=lambda wildcards, output: Path(output.comparison).parent,
    shell:
        "OMP_NUM_THREADS={threads} python -m drs report --plan {params.plan:q} "
        "--out-dir {params.out_dir:q} --summary {output.summary:q} > {log:q} 2>&1"


rule ablation_summary:
    input:
        **report_inputs("ablation"),
        figure=res(paths.COMPARISON) + ".png",
    output:
        **report_outputs(res(paths.ABLATION_REPORT), "ablation"),
        summary=res(paths.ABLATION_SUMMARY),
    log:
        log_file("ablation_summary", None),
    benchmark:
        benchmark_file("ablation_summary", None)
    conda:
        DRS_ENV
    params:
        plan=report_plan_json("ablation"),
        out_dir=lambda wildcards, output: Path(output.comparison).parent,
        title="DRS ablation: every experiment",
    shell:
        "OMP_NUM_THREADS={threads} python -m drs report --plan {params.plan:q} --title {params.title:q} "
        "--out-dir {params.out_dir:q} --summary {output.summary:q} > {log:q} 2>&1"


rule deeplabv2_summary:
    input:
        **report_inputs("deeplabv2"),
    output:
        **report_outputs(res(paths.DEEPLABV2_REPORT), "deeplabv2"),
        summary=res(paths.DEEPLABV2_SUMMARY),
    log:
        log_file("deeplabv2_summary", None),
    benchmark:
        benchmark_file("deeplabv2_summary", None)
    conda:
        DRS_ENV
    params:
        plan=report_plan_json("deeplabv2"),
        out_dir=lambda wildcards, output: Path(output.comparison).parent,
        title="DeepLab-V2 on the pseudo labels: the network of the paper's 71.4%",
    shell:
        "OMP_NUM_THREADS={threads} python -m drs report --plan {params.plan:q} --title {params.title:q} "
        "--out-dir {params.out_dir:q} --summary {output.summary:q} > {log:q} 2>&1"
