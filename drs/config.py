"""Workflow configuration checks that a JSON schema cannot express.

When the workflow is parsed, before any job starts: :func:`check_schema` reports every schema error
as one line naming the key, what it holds and what was expected; Snakemake's ``validate`` then fills
in the schema's defaults; :func:`check_config` checks the rules across keys. Light imports only:
every job re-parses the Snakefile.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from drs.data.synth_spec import SynthSpec
from drs.errors import UserError

# folders of the results directory that are not experiments
RESERVED_NAMES = {"data", "logs", "benchmarks", "downloads"}


def dataset_root(config: dict) -> str:
    """The dataset folder the workflow reads (built by a rule unless dataset is 'folder')."""
    if config["dataset"] == "folder":
        return config["dataset_dir"]
    return str(Path(config.get("results_dir", "results")) / "data" / config["dataset"])


def _describe(error: jsonschema.ValidationError) -> list[str]:
    path = [str(p) for p in error.absolute_path]
    key = ".".join(path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        prefix = f"{key}." if key else ""
        return [
            f"config key '{prefix}{extra}': unknown key; expected one of {allowed}"
            for extra in error.instance
            if extra not in allowed
        ]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        prefix = f"{key}." if key else ""
        return [f"config key '{prefix}{missing}': required but missing"]
    expected = error.schema.get("description")
    hint = f" (expected: {expected})" if expected else ""
    return [f"config key '{key or '(top level)'}': {error.message}{hint}"]


def check_schema(config: dict, schema_path: str | Path) -> None:
    """Raise UserError listing every schema violation, one line each, naming the key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [line for error in errors for line in _describe(error)]
    if lines:
        raise UserError("\n".join(lines))


# rules that can run on several processes (torchrun), and the config section whose batch_size
# each one's processes share (None: map extraction, which shards images, not batches)
DDP_RULES = {
    "train_classifier": "classifier",
    "extract_maps": None,
    "train_refiner": "refiner",
    "extract_refined_maps": None,
    "train_segmenter": "segmenter",
}


def ddp_nproc(config: dict, rule: str) -> int:
    """Processes (one per GPU) of a rule's job: ``ddp.rules.<rule>``, else ``ddp.nproc``, else 1."""
    ddp = config.get("ddp") or {}
    return int((ddp.get("rules") or {}).get(rule, ddp.get("nproc", 1)))


def _check_ddp(config: dict) -> None:
    for rule, section in DDP_RULES.items():
        nproc = ddp_nproc(config, rule)
        batch = (config.get(section) or {}).get("batch_size") if section else None
        if nproc > 1 and batch is not None and batch % nproc:
            key = f"ddp.rules.{rule}" if rule in (config.get("ddp") or {}).get("rules", {}) else "ddp.nproc"
            raise UserError(
                f"config key '{key}': {nproc} processes cannot share {section}.batch_size {batch} (the global "
                f"batch is split evenly between the processes); use a divisor of {batch}, or set "
                f"ddp.rules.{rule} to one"
            )


def _check_evaluation(config: dict) -> None:
    evaluation = config.get("evaluation") or {}
    if evaluation.get("protocol") == "reference" and (list(evaluation.get("scales", [1.0])) != [1.0] or evaluation.get("flip")):
        raise UserError(
            "config key 'evaluation.protocol': reference is one scale without flip (the authors' --crop_val); "
            "set scales: [1.0] and flip: false, or use protocol: full"
        )
    if evaluation.get("checkpoint") == "best_on_val" and not (config.get("segmenter") or {}).get("val_every"):
        raise UserError("config key 'evaluation.checkpoint': best_on_val needs segmenter.val_every (steps between validations)")


def check_config(config: dict) -> None:
    """Raise UserError naming the key at fault and what was expected."""
    _check_ddp(config)
    _check_evaluation(config)
    experiments = config["experiments"]
    main = config["main_experiment"]
    if main not in experiments:
        raise UserError(
            f"config key 'main_experiment': {main!r} is not an experiment; "
            f"expected one of {sorted(experiments)} (the keys of 'experiments')"
        )
    for name, exp in experiments.items():
        if name in RESERVED_NAMES:
            raise UserError(f"config key 'experiments.{name}': the name is taken by a results folder; avoid {sorted(RESERVED_NAMES)}")
        if exp.get("supervision", "image") == "full":
            extra = sorted(set(exp) & {"drs", "delta"})
            if extra:
                raise UserError(
                    f"config key 'experiments.{name}.{extra[0]}': not used with supervision: full "
                    "(DeepLabV3+ trained on the ground-truth masks)"
                )
            continue
        if "drs" not in exp:
            raise UserError(f"config key 'experiments.{name}.drs': required (learnable, fixed or none) unless supervision is full")
        if exp["drs"] == "fixed" and "delta" not in exp:
            raise UserError(f"config key 'experiments.{name}.delta': required when drs is 'fixed' (a number in (0, 1])")
        if exp["drs"] != "fixed" and "delta" in exp:
            raise UserError(
                f"config key 'experiments.{name}.delta': only used with drs: fixed (this experiment has drs: {exp['drs']})"
            )

    if experiments[main].get("supervision", "image") == "full":
        raise UserError(
            f"config key 'main_experiment': {main!r} has supervision: full; the main experiment is a "
            "weakly-supervised one (supervision: image), the fully-supervised run is its reference"
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
        raise UserError("config key 'voc2012.archives': required when dataset is 'voc2012' (name -> url, md5, extract; see config/voc2012.yaml)")
    if dataset == "synthetic":
        SynthSpec.from_dict(config.get("synthetic", {}))
