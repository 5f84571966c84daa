"""`make run` after a killed Snakemake: it removes the stale lock when no Snakemake or job of it still
runs in the folder (scripts/snakemake_recover.py), refuses while one does, and reruns the killed
run's incomplete jobs (--rerun-incomplete)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import BIN, REPO, TINY_CONFIG, snakemake

RECOVER = REPO / "scripts" / "snakemake_recover.py"


def recover(workdir: Path, config: Path) -> subprocess.CompletedProcess:
    """What `make run` runs first, for the workflow of this repository in ``workdir``."""
    cmd = [
        sys.executable,
        str(RECOVER),
        "--directory",
        str(workdir),
        "--",
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(config),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def locks(workdir: Path) -> list[str]:
    folder = workdir / ".snakemake" / "locks"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_make_run_recovers_then_reruns_incomplete_jobs():
    """`make -n run` (print only): the recovery step, then the workflow with --rerun-incomplete."""
    result = subprocess.run(["make", "-n", "run", "CORES=1"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    step = next(i for i, line in enumerate(lines) if "scripts/snakemake_recover.py -- " in line)
    run = next(i for i, line in enumerate(lines) if "snakemake --cores 1" in line)
    assert step < run and "--rerun-incomplete" in lines[run].split()
    assert lines[step].split()[-1].endswith("/bin/snakemake")


def test_recovery_leaves_the_lock_of_a_live_run(workdir):
    config = workdir / "config.yaml"
    config.write_text(TINY_CONFIG.read_text())
    assert recover(workdir, config).returncode == 0  # no lock: nothing to do
    (workdir / ".snakemake" / "locks").mkdir(parents=True)
    (workdir / ".snakemake" / "locks" / "0.output.lock").write_text("/some/output\n")
    # a Snakemake, and a job whose Snakemake was killed (it keeps writing its output)
    sleeper = "import time; time.sleep(120)"
    for fake in (["snakemake", "--cores", "1"], ["-m", "drs", "train-classifier"]):
        proc = subprocess.Popen([sys.executable, "-c", sleeper, *fake], cwd=workdir)
        try:
            time.sleep(0.5)
            result = recover(workdir, config)
            assert result.returncode == 1, result.stdout + result.stderr
            assert f"pid {proc.pid}" in result.stderr and "not unlocking" in result.stderr
            assert locks(workdir) == ["0.output.lock"]
        finally:
            proc.kill()
            proc.wait()
    # a Snakemake in another folder does not count
    proc = subprocess.Popen([sys.executable, "-c", sleeper, "snakemake"], cwd=workdir.parent)
    try:
        result = recover(workdir, config)
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removing the lock of a killed Snakemake run" in result.stdout and locks(workdir) == []


@pytest.mark.slow
def test_killed_run_recovers_the_way_make_run_does(workdir):
    """SIGKILL to a data-stage run and its jobs mid-job: a plain rerun stops at the lock; the
    recovery step and --rerun-incomplete finish it."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["synthetic"].update(num_train=24, num_val=6)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--configfile", str(path), "--cores", "1"]
    run = subprocess.Popen(
        [*cmd, "--", "data"], cwd=workdir, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    incomplete = workdir / ".snakemake" / "incomplete"
    deadline = time.monotonic() + 120
    while not (incomplete.is_dir() and any(incomplete.iterdir())):  # a job has started
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before a job started"
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)  # Snakemake and its jobs, as a crash would
    run.wait()
    assert locks(workdir)
    again = snakemake(workdir, "--configfile", str(path), "--cores", "1", "--", "data")
    assert again.returncode != 0 and "LockException" in again.stdout + again.stderr
    result = recover(workdir, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert locks(workdir) == []
    again = snakemake(workdir, "--configfile", str(path), "--cores", "1", "--rerun-incomplete", "--", "data")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((workdir / "results" / "data" / "dataset_check.json").read_text())
    assert report["ok"] and report["splits"]["train"] == 24
