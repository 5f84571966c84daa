"""What the tests share: the repository root, the tiny config and dataset spec, running Snakemake
in a scratch folder (or loading the workflow in-process), and a memory probe in a fresh process.
Fixtures live in conftest.py; tests import these names from here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "config" / "test.yaml"
BIN = Path(sys.executable).parent

# the tiny synthetic set most unit tests train and extract on: 8 train, 2 val images, 48 px
TINY_SPEC = dict(num_train=8, num_val=2, image_size=48, num_classes=3, object_size=(20, 32), clutter=2)


def snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run this repository's workflow with ``workdir`` as its working directory (results go there)."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)


@contextmanager
def load_workflow(configfile: Path, workdir: Path | None = None, cache: bool = False) -> Iterator:
    """The workflow as Snakemake parses it (its rules, their directives) for ``configfile``, in-process
    (``cache``: as under --cache)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        WorkflowSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(configfile)]),
            workflow_settings=WorkflowSettings(cache=[] if cache else None),
            snakefile=REPO / "Snakefile",
            workdir=Path(workdir or tempfile.mkdtemp()),
        )
        yield workflow._workflow


def memory_growth_mb(probe: str, args: list[str], first: int, last: int, unit: str) -> tuple[float, str]:
    """Run ``probe`` (Python source printing, last, a JSON {count: resident MB} at ``first`` and
    ``last``) with ``args`` in a fresh process at one OpenMP thread (pytest's own heap would blur
    the figures). Returns the growth in MB per ``unit`` between them and a sentence saying it."""
    run = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    rss = {int(k): v for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}
    growth = (rss[last] - rss[first]) / (last - first)
    return growth, (
        f"resident memory grew {growth:.3f} MB per {unit} ({rss[first]:.0f} MB after {first} {unit}s, "
        f"{rss[last]:.0f} MB after {last})"
    )


def box_blur(x, passes: int = 2):
    """A cheap separable 3x3 box blur of a 2-D array, applied ``passes`` times (test maps from masks)."""
    for _ in range(passes):
        p = np.pad(x, ((1, 1), (0, 0)), mode="edge")
        x = (p[:-2] + p[1:-1] + p[2:]) / 3.0
        p = np.pad(x, ((0, 0), (1, 1)), mode="edge")
        x = (p[:, :-2] + p[:, 1:-1] + p[:, 2:]) / 3.0
    return x
