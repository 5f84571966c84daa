"""The `drs` command: every stage has a subcommand with --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from drs.cli import COMMANDS, parse_args
from helpers import BIN

SUBCOMMANDS = sorted(COMMANDS)


def test_expected_subcommands():
    assert {"synth", "download", "check-dataset"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: drs {command}" in capsys.readouterr().out


def test_help_lists_every_command_without_loading_a_stage():
    """`drs --help` reads the command table only: no stage module, no torch."""
    code = (
        "import sys; from drs.cli import build_parser; text = build_parser().format_help(); "
        "print(all(c in text for c in sys.argv[1:]), sorted(m for m in sys.modules if m.startswith(('torch', "
        "'drs.stages'))))"
    )
    result = subprocess.run([sys.executable, "-c", code, *SUBCOMMANDS], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "[]"], result.stderr


def test_installed_entry_point():
    result = subprocess.run([str(BIN / "drs"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "check-dataset" in result.stdout


def test_user_error_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [str(BIN / "drs"), "check-dataset", str(tmp_path / "absent")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "absent: dataset folder not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["train-classifier", "train-refiner", "train-segmenter"])
@pytest.mark.parametrize(
    ("text", "message"), [("{epochs: 1}", "not valid JSON"), ("[1]", "expected a JSON object, got list")]
)
def test_training_settings_must_be_a_json_object(command, text, message, tmp_path, capsys):
    from drs.cli import main

    args = [command, "--dataset", str(tmp_path), "--out", str(tmp_path / "out"), "--settings", text]
    args += {"train-refiner": ["--store", "x.h5"], "train-segmenter": ["--labels", "x"]}.get(command, [])
    assert main(args) == 2
    assert f"--settings: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
