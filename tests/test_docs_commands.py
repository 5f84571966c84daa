"""The README's and the docs' commands are true of the code: every `drs` command line in their
code blocks parses, and the job counts they state are what Snakemake plans."""

from __future__ import annotations

import re
import shlex

import pytest

from drs.cli import COMMANDS, parse_args
from helpers import REPO, snakemake

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _code_lines(path):
    """(line number, command) of each `drs ...` line in the file's bash code blocks."""
    inside, pending, start = False, "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = line.strip() in ("```bash", "```sh", "```console") if not inside else False
            continue
        if not inside:
            continue
        if not pending:
            start = n
        pending += line.rstrip()
        if pending.endswith("\\"):  # a continued line
            pending = pending[:-1] + " "
            continue
        command, pending = pending.split(" #")[0].strip(), ""
        if command.startswith("drs ") and "..." not in command:
            yield start, command


COMMAND_LINES = [(path, n, command) for path in DOCS for n, command in _code_lines(path)]


def test_the_docs_have_drs_command_lines():
    assert len(COMMAND_LINES) >= 10


@pytest.mark.parametrize(("path", "line", "command"), COMMAND_LINES, ids=[f"{p.name}:{n}" for p, n, _ in COMMAND_LINES])
def test_every_drs_command_in_the_docs_parses(path, line, command):
    argv = shlex.split(command)[1:]
    assert argv[0] in COMMANDS, f"{path.name}:{line}: no subcommand {argv[0]!r}"
    try:
        parse_args(argv)
    except SystemExit as err:
        pytest.fail(f"{path.name}:{line}: `{command}` does not parse (exit {err.code})")


def _planned_jobs(workdir, configfile):
    run = snakemake(workdir, "-n", "--configfile", str(configfile))
    assert run.returncode == 0, run.stderr[-2000:]
    return int(re.search(r"^total\s+(\d+)$", run.stdout + run.stderr, re.M).group(1))


def test_the_default_runs_job_count_is_the_one_the_docs_state(workdir):
    stated = {int(m) for m in re.findall(r"plans the (\d+) jobs of the default run", (REPO / "README.md").read_text())}
    stated |= {
        int(m) for m in re.findall(r"On `config.yaml` that is (\d+) jobs", (REPO / "docs/pipeline.md").read_text())
    }
    assert len(stated) == 1, stated
    assert _planned_jobs(workdir, REPO / "config.yaml") == stated.pop()
