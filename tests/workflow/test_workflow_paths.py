"""Paths with spaces, quotes and non-ASCII in `results_dir` and `dataset_dir` reach every rule's
command as whole arguments (and never as a redirection to some other file)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import BIN, REPO, TINY_CONFIG, snakemake

# one space, a single quote, a double quote and non-ASCII letters in each
RESULTS_DIR = "out/wf space 'q\" é"
DATASET_NAME = "my data 'x\" ü"
# the case: unquoted, `> out/wf space é/logs/...` redirects into a file `out/wf`
SPACED_RESULTS_DIR = "out/wf space é"

# the options of the rules' commands that take a path under results_dir
RESULT_OPTIONS = {
    "--out",
    "--json",
    "--model",
    "--store",
    "--predictions",
    "--summary",
    "--out-dir",
    "--pseudo-labels",
    "--segmenter",
    "--figure",
    "--downloads",
    ">",
}
SHELL_RULES = {
    "check_dataset",
    "train_classifier",
    "extract_maps",
    "eval_maps",
    "train_refiner",
    "extract_refined_maps",
    "pseudo_labels",
    "score_labels",
    "train_segmenter",
    "evaluate",
    "summary",
    "compare_cams",
    "ablation_summary",
}


def write_config(path: Path, base: Path = TINY_CONFIG, **changes) -> Path:
    config = yaml.safe_load(base.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def shell_commands(output: str) -> dict[str, list[list[str]]]:
    """rule name -> the argument lists of its jobs' commands, from `snakemake -n -p` output."""
    commands: dict[str, list[list[str]]] = {}
    rule = None
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("rule", "localrule") and words[1].endswith(":"):
            rule = words[1][:-1]
        elif line.startswith("Shell command: ") and line != "Shell command: None":
            commands.setdefault(rule, []).append(shlex.split(line[len("Shell command: ") :]))
    return commands


def json_strings(value) -> list[str]:
    """Every string in a decoded JSON value (keys and values, at any depth)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in json_strings(k) + json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return [value] if isinstance(value, str) else []


def check_whole(args: list[str], path: str, fragment: str, where: str) -> None:
    """Every argument holding a piece of ``path`` holds all of it; an argument that is a JSON
    object (--settings, --plan) is checked string by string, as the stage decodes it."""
    for arg in args:
        try:
            decoded = json.loads(arg) if arg.startswith("{") else None
        except ValueError:
            decoded = None
        for text in json_strings(decoded) if isinstance(decoded, dict) else [arg]:
            if fragment in text:
                assert path in text, f"{where}: argument {arg!r} is a piece of {path!r}: {args}"


def dry_run(workdir: Path, config: Path, *targets: str) -> dict[str, list[list[str]]]:
    result = snakemake(workdir, "-n", "-p", "--configfile", str(config), "--", *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    return shell_commands(result.stdout + result.stderr)


@pytest.mark.slow
def test_dry_run_commands_keep_results_and_dataset_paths_whole(workdir):
    # results_dir on the synthetic set: every rule but the download
    config = write_config(workdir / "results.yaml", results_dir=RESULTS_DIR)
    commands = dry_run(workdir, config, "all", "ablation")
    assert SHELL_RULES | {"synthesize_dataset"} <= set(commands), sorted(commands)
    dataset = f"{RESULTS_DIR}/data/synthetic"
    for rule, jobs in commands.items():
        for args in jobs:
            check_whole(args, RESULTS_DIR, "wf space", rule)
            for option, value in zip(args, args[1:]):
                if option in RESULT_OPTIONS:
                    assert value.startswith(f"{RESULTS_DIR}/"), (rule, option, value, args)
                if option == "--dataset":
                    assert value == dataset, (rule, args)
            # `> LOG 2>&1`, LOG whole under results_dir/logs
            assert args[-3] == ">" and args[-1] == "2>&1", (rule, args)
            assert args[-2].startswith(f"{RESULTS_DIR}/logs/") and args[-2].endswith(".log"), (rule, args)
    # `drs report`'s plan (paths whole once decoded) and its title
    report = commands["ablation_summary"][0]
    plan = json.loads(report[report.index("--plan") + 1])
    assert plan["metrics"]["drs:cam"] == f"{RESULTS_DIR}/drs/metrics/cam.json"
    assert report[report.index("--title") + 1] == "DRS ablation: every experiment"
    compare = commands["compare_cams"][0]
    assert f"drs={RESULTS_DIR}/drs/metrics/cam.json" in compare

    # dataset_dir (dataset: folder) beside results_dir
    folder = workdir / DATASET_NAME / "VOC ü"
    folder.mkdir(parents=True)
    config = write_config(workdir / "folder.yaml", results_dir=RESULTS_DIR, dataset="folder", dataset_dir=str(folder))
    commands = dry_run(workdir, config, "all", "ablation")
    assert SHELL_RULES <= set(commands) and "synthesize_dataset" not in commands
    for rule, jobs in commands.items():
        for args in jobs:
            check_whole(args, str(folder), DATASET_NAME.split()[0], rule)
            check_whole(args, RESULTS_DIR, "wf space", rule)
            if "--dataset" in args:
                assert args[args.index("--dataset") + 1] == str(folder), (rule, args)
    assert commands["check_dataset"][0][4] == str(folder), commands["check_dataset"]

    # the VOC download
    config = write_config(workdir / "voc.yaml", base=REPO / "config" / "voc2012.yaml", results_dir=RESULTS_DIR)
    download = dry_run(workdir, config, "data")["download_voc2012"][0]
    check_whole(download, RESULTS_DIR, "wf space", "download_voc2012")
    assert download[4] == f"{RESULTS_DIR}/data/voc2012"
    assert download[download.index("--downloads") + 1] == f"{RESULTS_DIR}/downloads"


@pytest.mark.slow
def test_data_stage_with_a_spaced_results_dir_leaves_other_files_alone(workdir):
    """A results_dir `out/wf space é` beside a file `out/wf`: the data stage runs, writes under
    results_dir only, and `out/wf` keeps its bytes."""
    (workdir / "out").mkdir()
    bystander = workdir / "out" / "wf"
    bystander.write_text("keep me\n")
    synthetic = dict(yaml.safe_load(TINY_CONFIG.read_text())["synthetic"], num_train=4, num_val=2, image_size=32)
    synthetic["object_size"] = [12, 20]
    config = write_config(workdir / "results.yaml", results_dir=SPACED_RESULTS_DIR, synthetic=synthetic)
    result = snakemake(workdir, "--cores", "1", "--configfile", str(config), "--", "data")
    assert bystander.read_text() == "keep me\n", f"{bystander} overwritten"
    assert result.returncode == 0, result.stdout + result.stderr
    results = workdir / SPACED_RESULTS_DIR
    report = json.loads((results / "data" / "dataset_check.json").read_text())
    assert report["ok"] and report["splits"]["train"] == 4 and report["splits"]["val"] == 2
    assert report["root"] == f"{SPACED_RESULTS_DIR}/data/synthetic"
    assert "OK" in (results / "logs" / "check_dataset.log").read_text()
    assert sorted(p.name for p in (workdir / "out").iterdir()) == sorted(["wf", Path(SPACED_RESULTS_DIR).name])


@pytest.mark.slow
def test_folder_dataset_and_checkout_at_odd_paths(workdir):
    """dataset: folder at a path with spaces, quotes and non-ASCII, run from a checkout at such a
    path (the jobs' shell prefix puts it on PYTHONPATH): the dataset check runs and passes."""
    from drs.data.synth import generate
    from drs.data.synth_spec import SynthSpec

    checkout = workdir / "checkout 'c\" ü"
    checkout.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, checkout / name)
    for name in ("workflow", "drs", "envs"):
        shutil.copytree(REPO / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    folder = generate(
        workdir / DATASET_NAME / "VOC ü",
        SynthSpec(num_train=4, num_val=2, image_size=32, object_size=(12, 20)),
        workers=1,
    )
    config = write_config(workdir / "folder.yaml", dataset="folder", dataset_dir=str(folder))
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(checkout / "Snakefile"),
        "--cores",
        "1",
        "--configfile",
        str(config),
        "--",
        "data",
    ]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((workdir / "results" / "data" / "dataset_check.json").read_text())
    assert report["ok"] and report["root"] == str(folder)
