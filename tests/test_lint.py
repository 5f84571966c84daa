"""The code is ruff-clean and ruff-formatted (pyproject.toml's configuration), in the fast loop too."""

from __future__ import annotations

import subprocess

import pytest

from helpers import BIN, REPO

PATHS = ["drs", "tests", "scripts"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    result = subprocess.run(
        [str(BIN / "ruff"), *command, *PATHS], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
