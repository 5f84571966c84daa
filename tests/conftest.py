"""The fixtures the tests share: a scratch working folder and the tiny synthetic datasets (made
once per session). Shared helpers and constants are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from drs.data.synth import generate
from drs.data.synth_spec import SynthSpec
from helpers import TINY_SPEC


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A factory: ``synth_dataset(spec)`` is the dataset of a drs.data.synth_spec.SynthSpec, made
    once per session for each distinct spec and shared by every test asking for it: read it,
    never change it (a test that does copies it into its own tmp_path first)."""
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
    return synth_dataset(SynthSpec(**TINY_SPEC))
