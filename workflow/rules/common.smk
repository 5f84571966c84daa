import json
import sys

# The Snakefile imports drs from this checkout (installed or not) for its config checks.
sys.path.insert(0, workflow.basedir)

from drs.config import check_config, dataset_root
from drs.errors import UserError

try:
    check_config(config)
except UserError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

DATASET = dataset_root(config)
DATASET_CHECK = "results/data/dataset_check.json"
DRS_ENV = "../../envs/drs.yaml"

# Jobs run `python -m drs <stage>` (the same as `drs <stage>` by hand) with this checkout on the
# module path: the project's venv and a conda env built from envs/drs.yaml both work.
# (Snakemake formats the prefix like a command, hence the doubled braces.)
shell.prefix(
    "set -euo pipefail; export PYTHONPATH='"
    + workflow.basedir
    + "'${{PYTHONPATH:+:$PYTHONPATH}}; "
)
