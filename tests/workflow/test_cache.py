"""Snakemake's between-workflow cache (--cache): the dataset is made once and shared."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import BIN, REPO, TINY_CONFIG


def run(workdir: Path, cache: Path, *args: str) -> str:
    workdir.mkdir(exist_ok=True)
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    env = {**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)}
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_second_workflow_takes_the_dataset_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    options = ("--cores", "2", "--cache", "--configfile", str(TINY_CONFIG), "--", "data")
    out = run(tmp_path / "first", cache, *options)
    assert "Moving output file results/data/synthetic to cache" in out
    (entry,) = cache.iterdir()  # one entry, named by the provenance hash
    dataset = tmp_path / "first/results/data/synthetic"
    assert dataset.is_symlink() and dataset.resolve() == entry.resolve()
    assert "Nothing to be done" in run(tmp_path / "first", cache, "-n", *options)

    # another folder: the dataset comes from the cache, the generator does not run
    out = run(tmp_path / "second", cache, *options)
    assert "from cache" in out and "drs synth" not in out
    second = tmp_path / "second/results/data"
    log = tmp_path / "second/results/logs/synthesize_dataset.log"
    assert not log.exists() or not log.read_text()
    # the folder holds a link to each entry of the cached one (and Snakemake's timestamp file)
    listed = [p for p in (second / "synthetic").iterdir() if p.name != ".snakemake_timestamp"]
    assert len(listed) >= 5 and all(p.is_symlink() and p.resolve().parent == entry.resolve() for p in listed)
    assert (second / "dataset_check.json").read_text() == (
        tmp_path / "first/results/data/dataset_check.json"
    ).read_text()

    # a different generator setting is another cache entry, made anew
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["synthetic"]["seed"] += 1
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(config))
    out = run(tmp_path / "third", cache, "--cores", "2", "--cache", "--configfile", str(other), "--", "data")
    assert "Moving output file results/data/synthetic to cache" in out
    assert len(list(cache.iterdir())) == 2
