"""Workflow configuration checks that a JSON schema cannot express.

When the workflow is parsed, before any job starts: :func:`drs.config.validate.check_schema`
reports every schema error as one line naming the key, what it holds and what was expected;
Snakemake's ``validate`` then fills in the schema's defaults; :func:`check_config` checks the rules
across keys. Light imports only: every job re-parses the Snakefile. :func:`load_yaml` reads a config
file naming the line of a YAML syntax error; `drs check-config FILE` makes all these checks on one
file (Snakemake's own message for a bad ``--configfile`` names neither file nor line).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from drs.config import paths
from drs.config.schema import SCHEMA_PATH
from drs.config.validate import check_schema
from drs.data.synth_spec import SynthSpec
from drs.errors import UserError

# folders of the results directory that are not experiments
RESERVED_NAMES = {"data", "logs", "benchmarks", "downloads"}


def dataset_root(config: dict) -> str:
    """The dataset folder the workflow reads (built by a rule unless dataset is 'folder')."""
    if config["dataset"] == "folder":
        return config["dataset_dir"]
    return str(Path(config.get("results_dir", "results")) / paths.fill(paths.DATASET, dataset=config["dataset"]))


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


def _check_results_dir(results_dir: str) -> None:
    """The results folder, and each folder above it that exists, must be a folder (not a file)."""
    path = Path(results_dir)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"lies under {str(folder)!r}, which is a file"
                raise UserError(f"config key 'results_dir': {results_dir!r} {what}, not a folder; pick another path")
            return


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping; UserError naming the file, line and column of a syntax error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read config file ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = ""
        if err.context:
            started = f" started at line {err.context_mark.line + 1}" if err.context_mark and err.problem_mark else ""
            context = f" ({err.context}{started})"
        raise UserError(f"{where}: not valid YAML: {err.problem or err.context}{context}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def _check_evaluation(config: dict) -> None:
    evaluation = config.get("evaluation") or {}
    if evaluation.get("protocol") == "reference" and (
        list(evaluation.get("scales", [1.0])) != [1.0] or evaluation.get("flip")
    ):
        raise UserError(
            "config key 'evaluation.protocol': reference is one scale without flip (the authors' --crop_val); "
            "set scales: [1.0] and flip: false, or use protocol: full"
        )
    if evaluation.get("checkpoint") == "best_on_val" and not (config.get("segmenter") or {}).get("val_every"):
        raise UserError(
            "config key 'evaluation.checkpoint': best_on_val needs segmenter.val_every (steps between validations)"
        )


#: the experiment keys that say where its classifier, refiner or pseudo labels come from
LABEL_SOURCES = ("classifier_weights", "refiner_weights", "pseudo_labels_dir", "pseudo_labels_from")


def _check_weights(config: dict) -> None:
    """DeepLab-V2 from the COCO weights (deeplabv2.pretrained: coco) needs weights.deeplabv1_coco;
    DeepLab-V2 experiments have no best.pt (segmenter.val_every)."""
    uses = [
        e
        for e, spec in config["experiments"].items()
        if (spec.get("segmenter") or {}).get("architecture") == "deeplabv2"
    ]
    if uses and (config.get("deeplabv2") or {}).get("pretrained", "coco") == "coco":
        if "deeplabv1_coco" not in (config.get("weights") or {}):
            raise UserError(
                f"config key 'weights.deeplabv1_coco': required when deeplabv2.pretrained is coco (experiment "
                f"{uses[0]!r} trains DeepLab-V2): the url (and md5) of the authors' deeplabv1_resnet101-coco.pth, "
                "as in config/voc2012.yaml; or set deeplabv2.pretrained to imagenet, none or a path"
            )


def _check_labels_from(experiments: dict, name: str, exp: dict) -> None:
    """pseudo_labels_from names an experiment that makes pseudo labels (a classifier and maps)."""
    source = exp.get("pseudo_labels_from")
    if source is None:
        return
    spec = experiments.get(source)
    makes_labels = spec is not None and spec.get("supervision", "image") == "image"
    makes_labels = makes_labels and not {"pseudo_labels_dir", "pseudo_labels_from"} & set(spec)
    if source == name or not makes_labels:
        weak = sorted(
            e for e, s in experiments.items() if e != name and "drs" in s and s.get("supervision", "image") == "image"
        )
        raise UserError(
            f"config key 'experiments.{name}.pseudo_labels_from': {source!r} is not an experiment that makes "
            f"pseudo labels; expected one of {weak}"
        )


def check_config(config: dict) -> None:
    """Raise UserError naming the key at fault and what was expected."""
    _check_ddp(config)
    _check_results_dir(config.get("results_dir", "results"))
    _check_evaluation(config)
    _check_weights(config)
    experiments = config["experiments"]
    main = config["main_experiment"]
    if main not in experiments:
        raise UserError(
            f"config key 'main_experiment': {main!r} is not an experiment; "
            f"expected one of {sorted(experiments)} (the keys of 'experiments')"
        )
    if config.get("report", {}).get("deeplabv2_in_all") and not any(
        (exp.get("segmenter") or {}).get("architecture") == "deeplabv2" for exp in experiments.values()
    ):
        raise UserError(
            "config key 'report.deeplabv2_in_all': true, but no experiment has segmenter: {architecture: deeplabv2}; "
            "add one (e.g. {pseudo_labels_from: drs, segmenter: {architecture: deeplabv2}}) or set it false"
        )
    for name, exp in experiments.items():
        if name in RESERVED_NAMES:
            raise UserError(
                f"config key 'experiments.{name}': the name is taken by a results folder; avoid "
                f"{sorted(RESERVED_NAMES)}"
            )
        if exp.get("supervision", "image") == "full":
            extra = sorted(set(exp) & {"drs", "delta", *LABEL_SOURCES})
            if extra:
                raise UserError(
                    f"config key 'experiments.{name}.{extra[0]}': not used with supervision: full "
                    "(the segmenter trained on the ground-truth masks)"
                )
            continue
        given = [key for key in ("pseudo_labels_dir", "pseudo_labels_from") if key in exp]
        if given:
            extra = sorted(set(exp) & {"drs", "delta", *LABEL_SOURCES} - {given[0]})
            if extra:
                raise UserError(
                    f"config key 'experiments.{name}.{extra[0]}': not used with {given[0]} "
                    "(the segmenter learns from the given labels; no classifier or refiner is made)"
                )
            _check_labels_from(experiments, name, exp)
            continue
        if "classifier_weights" in exp and exp.get("drs") == "none":
            raise UserError(
                f"config key 'experiments.{name}.classifier_weights': the reference classifier has DRS modules; "
                "set drs: learnable (or fixed with delta)"
            )
        if "drs" not in exp:
            raise UserError(
                f"config key 'experiments.{name}.drs': required (learnable, fixed or none) unless supervision is full"
            )
        if exp["drs"] == "fixed" and "delta" not in exp:
            raise UserError(f"config key 'experiments.{name}.delta': required when drs is 'fixed' (a number in (0, 1])")
        if exp["drs"] != "fixed" and "delta" in exp:
            raise UserError(
                f"config key 'experiments.{name}.delta': only used with drs: fixed (this experiment has drs: "
                f"{exp['drs']})"
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
        if Path(folder).exists() and not Path(folder).is_dir():
            raise UserError(
                f"config key 'dataset_dir': {folder!r} is a file, not a folder (dataset: folder needs a VOC-layout "
                "folder)"
            )
        if not Path(folder).is_dir():
            raise UserError(
                f"config key 'dataset_dir': folder {folder!r} not found (dataset: folder needs an existing "
                "VOC-layout folder)"
            )
    elif config.get("dataset_dir"):
        raise UserError(f"config key 'dataset_dir': only used with dataset: folder (dataset is {dataset!r})")
    if dataset == "voc2012" and not config.get("voc2012", {}).get("archives"):
        raise UserError(
            "config key 'voc2012.archives': required when dataset is 'voc2012' (name -> url, md5, extract; see "
            "config/voc2012.yaml)"
        )
    if dataset == "synthetic":
        SynthSpec.from_dict(config.get("synthetic", {}))


def check_config_file(path: str | Path, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """The checks the workflow makes when it starts, on one config file: YAML syntax (file, line and
    column named), the schema (every error, key named), then the rules across keys. Returns the config
    with the schema's defaults filled in."""
    config = load_yaml(path)
    check_schema(config, schema_path)
    # snakemake (heavy, and absent on a bare GPU node): only `drs check-config` needs it
    from snakemake.utils import validate  # fills in the schema's defaults, as the Snakefile does

    validate(config, str(schema_path))
    check_config(config)
    return config
