import json
import sys
from pathlib import Path

from snakemake.utils import validate

# The Snakefile imports drs from this checkout (installed or not) for its config checks.
sys.path.insert(0, workflow.basedir)

from drs.compare import variant_of
from drs.config import check_config, check_schema, dataset_root
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
# with it, a conda env built from envs/drs.yaml. Snakemake formats the prefix like a command,
# hence the doubled braces.
_use_conda = "conda" in {
    str(m).lower() for m in workflow.deployment_settings.deployment_method
}
_python_bin = (
    "" if _use_conda else f"export PATH='{Path(sys.executable).parent}':\"$PATH\"; "
)
shell.prefix(
    "set -euo pipefail; "
    + _python_bin
    + "export PYTHONPATH='"
    + workflow.basedir
    + "'${{PYTHONPATH:+:$PYTHONPATH}}; "
)

EXPERIMENTS = config["experiments"]
MAIN = config["main_experiment"]
TRAIN_SPLIT = config["train_split"]
# one run per variant (experiments differing only by a trailing _s<seed>) for pictures
VARIANT_FIRST_RUNS = list(
    {variant_of(e): e for e in reversed(list(EXPERIMENTS))}.values()
)[::-1]


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    # a split name; stores of refined maps end in _refined and are not splits
    split="[A-Za-z0-9_]+(?<!_refined)",


# extract-maps options shared by the classifier's and the refiner's maps
MAPS_OPTIONS = " ".join(
    [
        "--scales",
        *(str(s) for s in config["maps"]["scales"]),
        *(["--flip"] if config["maps"]["flip"] else []),
        f"--batch-size {config['maps']['batch_size']}",
    ]
)


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
    delta = f" --delta {exp['delta']}" if exp["drs"] == "fixed" else ""
    return f"--drs {exp['drs']}{delta}"


def classifier_settings(wildcards):
    """The classifier section as JSON, with the experiment's seed if it sets one."""
    settings = dict(config["classifier"])
    if "seed" in EXPERIMENTS[wildcards.exp]:
        settings["seed"] = EXPERIMENTS[wildcards.exp]["seed"]
    return json.dumps(settings, sort_keys=True)
