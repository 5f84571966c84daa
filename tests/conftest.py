"""Shared helpers: the repository root, the tiny config, running Snakemake in a scratch folder, and
the tiny synthetic datasets the tests share (made once per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "config" / "test.yaml"
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run this repository's workflow with ``workdir`` as its working directory (results go there)."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)


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


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


# the tiny synthetic set most unit tests train and extract on: 8 train, 2 val images, 48 px
TINY_SPEC = dict(num_train=8, num_val=2, image_size=48, num_classes=3, object_size=(20, 32), clutter=2)


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A factory: ``synth_dataset(spec)`` is the dataset of a drs.data.synth_spec.SynthSpec, made
    once per session for each distinct spec and shared by every test asking for it: read it,
    never change it (a test that does copies it into its own tmp_path first)."""
    from drs.data.synth import generate

    made: dict[str, Path] = {}

    def make(spec) -> Path:
        key = repr(spec)
        if key not in made:
            made[key] = generate(tmp_path_factory.mktemp("synth") / "synthetic", spec, workers=1)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_dataset(synth_dataset) -> Path:
    """The shared tiny set (TINY_SPEC); read only."""
    from drs.data.synth_spec import SynthSpec

    return synth_dataset(SynthSpec(**TINY_SPEC))
