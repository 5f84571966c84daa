import json
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# The Snakefile imports drs from this checkout (installed or not) for its config checks.
sys.path.insert(0, workflow.basedir)

from drs.config import paths, plan
from drs.config.validate import check_schema
from drs.config.workflow import check_config, dataset_root
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


def res(template, **fields):
    """A path template of drs.config.paths under the results folder (config: results_dir), with
    ``fields`` filled in; the others stay wildcards."""
    return paths.under(config, template, **fields)


def log_file(rule, job="{exp}"):
    """A rule's log: logs/RULE/JOB.log, or logs/RULE.log for a rule of one job (``job`` None)."""
    return res(paths.LOG, name=rule if job is None else f"{rule}/{job}")


def benchmark_file(rule, job="{exp}"):
    """A rule's benchmark: benchmarks/RULE/JOB.tsv, or benchmarks/RULE.tsv (``job`` None)."""
    return res(paths.BENCHMARK, name=rule if job is None else f"{rule}/{job}")


DATASET = dataset_root(config)
DATASET_CHECK = res(paths.DATASET_CHECK)
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
# the training stages' --tensorboard (logging.tensorboard); empty when off, so that the commands, and
# the jobs Snakemake reruns on a changed command, stay as they were
TENSORBOARD = "--tensorboard " if config["logging"]["tensorboard"] else ""
VAL_SPLIT = config["val_split"]
TEST_SPLIT = config["evaluation"]["test_split"]
# the checkpoint stage 7 scores: the last one, or the best on val (segmenter.val_every)
EVAL_CHECKPOINT = paths.CHECKPOINT_FILES[config["evaluation"]["checkpoint"]]

# the experiment classes (drs.config.plan: pure functions of the config)
WEAK_EXPERIMENTS = plan.weak_experiments(config)
VARIANT_FIRST_RUNS = plan.variant_first_runs(config)


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    # a split name; stores of refined maps end in _refined and are not splits
    split="[A-Za-z0-9_]+(?<!_refined)",


# Every stage gets its config section in one way: `--settings {params.settings:q}`, the section
# as JSON (with the schema's defaults filled in), which the stage checks with its settings
# dataclass (drs.config.settings). Options are lists of arguments, one value each: a rule's shell
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


def drs_args(wildcards):
    """--drs/--delta options of an experiment."""
    exp = EXPERIMENTS[wildcards.exp]
    delta = ["--delta", str(exp["delta"])] if exp["drs"] == "fixed" else []
    return ["--drs", exp["drs"], *delta]


def experiments_with(key):
    """A wildcard regex matching the experiments that set ``key`` (none: matches nothing)."""
    names = [e for e in EXPERIMENTS if EXPERIMENTS[e].get(key)]
    return "|".join(names) if names else "(?!x)x"
