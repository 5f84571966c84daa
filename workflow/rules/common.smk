import json
import sys
from pathlib import Path

from snakemake.utils import validate

# The Snakefile imports drs from this checkout (installed or not) for its config checks.
sys.path.insert(0, workflow.basedir)

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

DATASET = dataset_root(config)
DATASET_CHECK = "results/data/dataset_check.json"
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
