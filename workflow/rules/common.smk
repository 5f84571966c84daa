import hashlib
import json
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# The Snakefile imports drs from this checkout (installed or not) for its config checks.
sys.path.insert(0, workflow.basedir)

from drs import plan
from drs.compare import variant_of
from drs.config import DDP_RULES, check_config, check_schema, dataset_root, ddp_nproc
from drs.errors import UserError

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

# Readable schema errors first, then Snakemake's validation (which also fills in the defaults),
# then the rules across keys; all before any job starts.
try:
    check_schema(config, SCHEMA)
    validate(config, str(SCHEMA))
    check_config(config)
except UserError as err:
    raise WorkflowError(f"invalid configuration:\n{err}") from None

RESULTS = config["results_dir"]


def res(path):
    """A path under the results folder (config: results_dir); wildcards stay wildcards."""
    return f"{RESULTS}/{path}"


DATASET = dataset_root(config)
DATASET_CHECK = res("data/dataset_check.json")
DRS_ENV = "../../envs/drs.yaml"

# Jobs run `python -m drs <stage>` (the same as `drs <stage>` by hand) with this checkout on the
# module path. Without --sdm conda they use the Python that runs Snakemake (the project's venv);
# with it, a conda env built from envs/drs.yaml. Paths are shell-quoted (any character may be in
# them), and braces doubled since Snakemake formats the prefix like a command.
_use_conda = "conda" in {
    str(m).lower() for m in workflow.deployment_settings.deployment_method
}
_python_bin = (
    ""
    if _use_conda
    else f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"; '
)
shell.prefix(
    (
        "set -euo pipefail; "
        + _python_bin
        + f"export PYTHONPATH={shlex.quote(workflow.basedir)}"
        + "${PYTHONPATH:+:$PYTHONPATH}; "
    )
    .replace("{", "{{")
    .replace("}", "}}")
)

EXPERIMENTS = config["experiments"]
MAIN = config["main_experiment"]
TRAIN_SPLIT = config["train_split"]


# the experiment classes (drs.plan: pure functions of the config)
def fully_supervised(exp):
    return plan.fully_supervised(config, exp)


def given_labels(exp):
    return plan.given_labels(config, exp)


LABEL_EXPERIMENTS = plan.label_experiments(config)
WEAK_EXPERIMENTS = plan.weak_experiments(config)
FULL_EXPERIMENTS = plan.full_experiments(config)
CAM_BASELINE = plan.cam_baseline(config)
VARIANT_FIRST_RUNS = plan.variant_first_runs(config)


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    # a split name; stores of refined maps end in _refined and are not splits
    split="[A-Za-z0-9_]+(?<!_refined)",


# Every stage gets its config section in one way: `--settings {params.settings:q}`, the section
# as JSON (with the schema's defaults filled in), which the stage checks with its settings
# dataclass (drs.settings). Options are lists of arguments, one value each: a rule's shell
# command passes them as {params.NAME:q}, which quotes every element.


def section_settings(name):
    """The config section ``name`` as JSON (a stage's --settings)."""
    return json.dumps(config[name], sort_keys=True)


def experiment_settings(name):
    """A params function: the config section ``name`` as JSON, with the experiment's seed if it
    sets one (the trainers' --settings)."""

    def settings(wildcards):
        values = dict(config[name])
        if "seed" in EXPERIMENTS[wildcards.exp]:
            values["seed"] = EXPERIMENTS[wildcards.exp]["seed"]
        return json.dumps(values, sort_keys=True)

    return settings


def train_store(exp="{exp}"):
    """The map store of an experiment's training split."""
    return res(f"{exp}/maps/{TRAIN_SPLIT}.h5")


def refined_store(exp="{exp}"):
    """The refined map store of an experiment's training split."""
    return res(f"{exp}/maps/{TRAIN_SPLIT}_refined.h5")


def cam_metrics(exp="{exp}"):
    return res(f"{exp}/metrics/cam.json")


def drs_args(wildcards):
    """--drs/--delta options of an experiment."""
    exp = EXPERIMENTS[wildcards.exp]
    delta = ["--delta", str(exp["delta"])] if exp["drs"] == "fixed" else []
    return ["--drs", exp["drs"], *delta]


# Multi-GPU jobs (README: Multi-GPU training). A training or map-extraction rule runs its stage
# as `{params.launch} <stage> ...` with `launch=launcher(RULE)`: one process (`python -m drs`)
# unless the config's `ddp` asks for more, then torchrun starts that many, one per GPU.


def nproc(rule):
    """Processes (one per GPU) of a rule's job: ddp.rules.<rule>, else ddp.nproc (default 1)."""
    return ddp_nproc(config, rule)


def launcher(rule):
    """A params function: the command that runs a `drs` stage for `rule`, each process with its
    share of the job's threads (OpenMP and MKL, which Snakemake sets to all of them): `python -m
    drs` for one process, else `torchrun --standalone --nproc_per_node=N -m drs` (free port).
    """
    n = nproc(rule)
    command = "python -m drs"
    if n > 1:
        command = f"torchrun --standalone --nproc_per_node={n} -m drs"

    def launch(wildcards, threads):
        share = max(1, threads // n)
        return f"OMP_NUM_THREADS={share} MKL_NUM_THREADS={share} {command}"

    return launch


# Stages 2 and 4 from released weights (workflow/rules/imported.smk)
def experiments_with(key):
    """A wildcard regex matching the experiments that set ``key`` (none: matches nothing)."""
    names = [e for e in EXPERIMENTS if EXPERIMENTS[e].get(key)]
    return "|".join(names) if names else "(?!x)x"


def classifier_import_args(wildcards):
    """--drs/--delta options of import-weights classifier for an experiment."""
    exp = EXPERIMENTS[wildcards.exp]
    delta = f" --delta {exp['delta']}" if exp["drs"] == "fixed" else ""
    return f"--drs {exp['drs']}{delta}"


# Stages 6 and 7: DeepLabV3+ and its evaluation
def segmenter_labels(wildcards):
    """The label folder the segmenter learns from (none for the fully supervised reference; the
    experiment's pseudo_labels_dir when it names one)."""
    if fully_supervised(wildcards.exp):
        return []
    return given_labels(wildcards.exp) or res(f"{wildcards.exp}/pseudo_labels")


VAL_SPLIT = config["val_split"]
TEST_SPLIT = config["evaluation"]["test_split"]
# the checkpoint stage 7 scores: the last one, or the best on val (segmenter.val_every)
_CHECKPOINT_FILES = {"last": "model.pt", "best_on_val": "best.pt"}
EVAL_CHECKPOINT = _CHECKPOINT_FILES[config["evaluation"]["checkpoint"]]


def segmentation_metrics(exp="{exp}"):
    return res(f"{exp}/metrics/segmentation.json")


# Resources (README: Running on a cluster). A rule that does real work is of one kind, whose
# requests come from the config's `resources:` section:
#   gpu_job: training, map extraction, evaluation: threads, gpu, mem_mb, runtime
#   cpu_job: dataset synthesis or download, pseudo labels: threads, mem_mb, runtime (never gpu)
# It declares `threads: job_threads(KIND)` and `resources: **job_resources(KIND, "RULE")` (the
# rule's own name: a job under torchrun asks for a GPU per process). Small rules (scoring,
# aggregating, reports) are localrules and declare no resources. Snakemake's --set-threads
# RULE=N and --set-resources RULE:KEY=VALUE (or a profile's set-threads and set-resources)
# override any value per rule; a new GPU rule also gets its partition in the slurm profile.


def job_threads(kind):
    """Threads of a job of this kind: capped at --cores locally, --cpus-per-task on SLURM."""
    return config["resources"][kind]["threads"]


def job_resources(kind, rule=None):
    """What a job of this kind asks for: mem_mb and runtime (minutes), both times the attempt
    (1, then 2, ... with --retries), and for a gpu_job its GPUs (`gpu`: counted against
    --resources gpu=N locally, --gpus=N on SLURM): resources.gpu_job.gpu per process, times
    the rule's process count when the config's `ddp` runs it under torchrun (hence the name).
    """
    spec = config["resources"][kind]
    requests = {
        "mem_mb": lambda wildcards, attempt: spec["mem_mb"] * attempt,
        "runtime": lambda wildcards, attempt: spec["runtime"] * attempt,
    }
    if kind == "gpu_job":
        requests["gpu"] = spec["gpu"] * (nproc(rule) if rule in DDP_RULES else 1)
    return requests


def source_digest(*modules):
    """SHA-256 (16 hex digits) of drs modules' source files. A param of the cached data rules:
    the between-workflow cache keys an output by its rule's command, params and inputs, so the
    code that makes the output has to be among them for a cache hit to stay valid."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update((Path(workflow.basedir) / module).read_bytes())
    return digest.hexdigest()[:16]


def between_workflow_cache(cacheable=True):
    """A `cache:` directive: "omit-software" (the output is keyed by the rule's command, params
    and inputs, not the software environment) when this run uses the between-workflow cache
    (--cache) and the output is cacheable; else False, which spares every other run Snakemake's
    "eligible for caching" notice."""
    enabled = workflow.workflow_settings.cache is not None
    return "omit-software" if cacheable and enabled else False


def voc_archives_pinned():
    """Whether every VOC archive has its MD5 pinned: an unverified archive (md5: null) may change
    behind its URL, so its download must not be cached."""
    archives = config["voc2012"].get("archives", {})
    return bool(archives) and all(a.get("md5") for a in archives.values())


# -- the report (workflow/rules/report.smk): what a scope covers is drs.plan.report_plan, which
# `drs report --plan` reads as one JSON object
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
