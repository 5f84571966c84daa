"""Config validation: every error names the key and what was expected, before any job starts."""

from __future__ import annotations

import copy

import pytest
import yaml

from drs.config.validate import check_schema
from drs.config.workflow import check_config, dataset_root
from drs.errors import UserError
from helpers import REPO, snakemake

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def with_changes(**changes) -> dict:
    config = copy.deepcopy(DEFAULT)
    config.update(changes)
    return config


def schema_error(config: dict) -> str:
    with pytest.raises(UserError) as err:
        check_schema(config, SCHEMA)
    return str(err.value)


def test_default_and_voc_configs_are_valid():
    for path in [REPO / "config.yaml", *sorted((REPO / "config").glob("*.yaml"))]:
        config = yaml.safe_load(path.read_text())
        check_schema(config, SCHEMA)
        if config["dataset"] != "folder":
            check_config(config)


def test_unknown_top_level_key():
    message = schema_error(with_changes(bogus_key=1))
    assert "config key 'bogus_key': unknown key" in message
    assert "'experiments'" in message  # lists what is allowed


def test_unknown_nested_key():
    config = with_changes()
    config["synthetic"]["saliency"]["blur"] = 1.0
    assert "config key 'synthetic.saliency.blur': unknown key" in schema_error(config)


def test_wrong_type():
    config = with_changes()
    config["synthetic"]["num_train"] = "many"
    message = schema_error(config)
    assert "config key 'synthetic.num_train'" in message and "integer" in message


def test_bad_enum_and_range_both_reported():
    config = with_changes(dataset="imagenet")
    config["experiments"]["drs_fixed"]["delta"] = 1.5
    lines = schema_error(config).splitlines()
    assert any("config key 'dataset'" in line and "synthetic" in line for line in lines)
    assert any("config key 'experiments.drs_fixed.delta'" in line and "maximum" in line for line in lines)


def test_missing_required_key():
    config = with_changes()
    del config["experiments"]
    assert "config key 'experiments': required but missing" in schema_error(config)


def test_unknown_main_experiment():
    with pytest.raises(
        UserError,
        match=r"config key 'main_experiment': 'nope' is not an experiment; "
        r"expected one of \['cam', 'drs', 'drs_deeplabv2', 'drs_fixed', 'fully_supervised', "
        r"'fully_supervised_deeplabv2'\]",
    ):
        check_config(with_changes(main_experiment="nope"))


def test_fixed_delta_required_and_exclusive():
    config = with_changes()
    del config["experiments"]["drs_fixed"]["delta"]
    with pytest.raises(UserError, match=r"experiments.drs_fixed.delta': required when drs is 'fixed'"):
        check_config(config)
    config = with_changes()
    config["experiments"]["drs"]["delta"] = 0.5
    with pytest.raises(UserError, match=r"experiments.drs.delta': only used with drs: fixed"):
        check_config(config)


def test_deeplabv2_in_all_needs_a_deeplabv2_experiment():
    config = with_changes(report={"deeplabv2_in_all": True})
    check_config(config)  # config.yaml has drs_deeplabv2
    for name in ("drs_deeplabv2", "fully_supervised_deeplabv2"):
        del config["experiments"][name]
    with pytest.raises(UserError, match=r"config key 'report.deeplabv2_in_all': true, but no experiment has"):
        check_config(config)
    check_config(with_changes(report={"deeplabv2_in_all": False}, experiments=config["experiments"]))


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(UserError, match=r"config key 'dataset_dir': folder '.*nowhere' not found"):
        check_config(with_changes(dataset="folder", dataset_dir=str(tmp_path / "nowhere")))
    with pytest.raises(UserError, match=r"config key 'dataset_dir': required"):
        check_config(with_changes(dataset="folder", dataset_dir=""))
    config = with_changes(dataset="folder", dataset_dir=str(tmp_path))
    check_config(config)
    assert dataset_root(config) == str(tmp_path)


def test_synthetic_cross_key_rules():
    config = with_changes()
    config["synthetic"]["object_size"] = [40, 400]
    with pytest.raises(UserError, match=r"config key 'synthetic.object_size'.*image_size \(128\)"):
        check_config(config)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"bogus_key": 1}, "config key 'bogus_key': unknown key"),
        ({"synthetic": {"num_train": "abc"}}, "config key 'synthetic.num_train': 'abc' is not of type 'integer'"),
        (
            {"dataset": "folder", "dataset_dir": "/nonexistent/voc"},
            "config key 'dataset_dir': folder '/nonexistent/voc' not found",
        ),
        ({"main_experiment": "drsx"}, "config key 'main_experiment': 'drsx' is not an experiment"),
    ],
    ids=["unknown-key", "wrong-type", "missing-folder", "unknown-experiment"],
)
def test_workflow_refuses_bad_config_before_any_job(workdir, change, expected):
    config = {"dataset": "synthetic", "experiments": {"drs": {"drs": "learnable"}}, "main_experiment": "drs"}
    config.update(change)
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", "--configfile", str(path))
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert not (workdir / "results").exists()  # nothing ran


def test_fully_supervised_experiments(tmp_path):
    """supervision: full takes no DRS keys, and the main experiment is weakly supervised."""
    config = copy.deepcopy(DEFAULT)
    config["experiments"]["ref"] = {"supervision": "full", "drs": "none"}
    with pytest.raises(UserError, match=r"'experiments.ref.drs': not used with supervision: full"):
        check_config(config)
    config = copy.deepcopy(DEFAULT)
    config["experiments"]["weak"] = {"seed": 1}
    with pytest.raises(UserError, match=r"'experiments.weak.drs': required"):
        check_config(config)
    config = copy.deepcopy(DEFAULT)
    config["main_experiment"] = "fully_supervised"
    with pytest.raises(UserError, match="'main_experiment': 'fully_supervised' has supervision: full"):
        check_config(config)
