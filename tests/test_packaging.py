"""Install metadata, the conda environment, the README's commands and CI stay in step."""

from __future__ import annotations

import re
import tomllib

import yaml

from helpers import REPO


def pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([^;\s]+)", req.strip())
        assert match, f"not an exact pin: {req!r}"
        out[match.group(1).lower()] = match.group(3)
    return out


def test_conda_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs/drs.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == pins(project["dependencies"])
    assert "python=3.11" in env["dependencies"]


def test_every_rule_names_an_existing_env_file():
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        text = smk.read_text()
        assert text.count("conda:") == text.count("\nrule "), smk
    assert (REPO / "envs/drs.yaml").exists()


def test_readme_commands_and_ci():
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (REPO / ".ci/run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run: \$\(STAMP\)", makefile, re.M) and re.search(r"^test: \$\(STAMP\)", makefile, re.M)


def test_results_is_ignored_but_kept():
    ignore = (REPO / ".gitignore").read_text().splitlines()
    assert "/results/*" in ignore and "!/results/.gitkeep" in ignore
    assert (REPO / "results/.gitkeep").exists()
