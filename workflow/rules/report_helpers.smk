# The report's inputs and outputs (workflow/rules/report.smk). What a scope covers is
# drs.config.plan.report_plan, which `drs report --plan` reads as one JSON object; the outputs are
# marked for `snakemake --report` with their captions (workflow/report/*.rst).


def report_plan_json(scope):
    return json.dumps(plan.report_plan(config, scope))


def report_inputs(scope):
    return {
        **plan.report_inputs(plan.report_plan(config, scope)),
        "check": DATASET_CHECK,
    }


def experiment_table_output(path, exp):
    """An experiment's per-class table, marked for the HTML report."""
    return report(
        path,
        caption="../report/experiment.rst",
        category="Experiments",
        labels={"experiment": exp, "method": plan.method_label(config, exp)},
    )


def report_outputs(folder, scope):
    """The files `drs report` writes into ``folder``, marked for the HTML report."""
    return {
        "comparison": report(
            f"{folder}/comparison.html",
            caption="../report/comparison.rst",
            category="Comparison",
            labels={"result": "comparison of the stages (table)"},
        ),
        "chart": report(
            f"{folder}/per_class_iou.png",
            caption="../report/per_class_iou.rst",
            category="Comparison",
            labels={"result": "per-class IoU (chart)"},
        ),
        "strips": report(
            f"{folder}/strips.png",
            caption="../report/strips.rst",
            category="Pictures",
            labels={"picture": "image, ground truth, maps, pseudo label, prediction"},
        ),
        "experiments": [
            experiment_table_output(f"{folder}/experiment_{e}.html", e)
            for e in plan.report_experiments(plan.report_plan(config, scope))
        ],
    }
