"""Workflow configuration checks that a JSON schema cannot express.

The Snakefile validates the config against workflow/schemas/config.schema.yaml first (types, unknown
keys, defaults), then calls :func:`check_config` for cross-key rules. Both run when the workflow is
parsed, before any job starts. Stdlib only: every job re-parses the Snakefile.
"""

from __future__ import annotations

from pathlib import Path

from drs.data.synth_spec import SynthSpec
from drs.errors import UserError

DATA_DIR = Path("results") / "data"


def dataset_root(config: dict) -> str:
    """The dataset folder the workflow reads (built by a rule unless dataset is 'folder')."""
    if config["dataset"] == "folder":
        return config["dataset_dir"]
    return str(DATA_DIR / config["dataset"])


def check_config(config: dict) -> None:
    """Raise UserError naming the key at fault and what was expected."""
    experiments = config["experiments"]
    main = config["main_experiment"]
    if main not in experiments:
        raise UserError(
            f"config key 'main_experiment': {main!r} is not an experiment; "
            f"expected one of {sorted(experiments)} (the keys of 'experiments')"
        )
    for name, exp in experiments.items():
        if exp["drs"] == "fixed" and "delta" not in exp:
            raise UserError(f"config key 'experiments.{name}.delta': required when drs is 'fixed' (a number in (0, 1])")
        if exp["drs"] != "fixed" and "delta" in exp:
            raise UserError(
                f"config key 'experiments.{name}.delta': only used with drs: fixed (this experiment has drs: {exp['drs']})"
            )

    dataset = config["dataset"]
    if dataset == "folder":
        folder = config.get("dataset_dir", "")
        if not folder:
            raise UserError("config key 'dataset_dir': required when dataset is 'folder' (a VOC-layout folder)")
        if not Path(folder).is_dir():
            raise UserError(f"config key 'dataset_dir': folder {folder!r} not found (dataset: folder needs an existing VOC-layout folder)")
    elif config.get("dataset_dir"):
        raise UserError(f"config key 'dataset_dir': only used with dataset: folder (dataset is {dataset!r})")
    if dataset == "voc2012" and not config.get("voc2012", {}).get("archives"):
        raise UserError("config key 'voc2012.archives': required when dataset is 'voc2012' (name -> url, md5, extract)")
    if dataset == "synthetic":
        SynthSpec.from_dict(config.get("synthetic", {}))
