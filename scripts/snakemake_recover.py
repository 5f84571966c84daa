#!/usr/bin/env python3
"""Remove the lock a killed Snakemake left behind, when that is safe (`make run` calls this first).

    python scripts/snakemake_recover.py [--directory DIR] -- SNAKEMAKE [OPTIONS]

A Snakemake run killed outright (kill -9, the out-of-memory killer, a closed terminal's SIGHUP, a
crashed machine) leaves its lock in DIR/.snakemake/locks/, and every later run there stops with
"Directory cannot be locked" until `snakemake --unlock`. Unlocking is safe only when nothing of that
run is still alive: no Snakemake process and no job of the workflow (`python -m drs ...`,
`torchrun ... -m drs ...`) whose working directory is DIR (a job whose Snakemake was killed keeps
running, writing its outputs). This looks for them on this machine:

- no lock: nothing to do (exit 0);
- a lock and such a process: it names them and exits 1, leaving the lock (wait for the run, or
  stop it);
- a lock and none: it runs `SNAKEMAKE OPTIONS --unlock` in DIR (exit 0 when that succeeds).

Processes on other machines (a SLURM job of the killed run, another login node sharing DIR) are
out of sight; docs/running.md "Recovering a killed run" says what to check there. Ctrl-C and SIGTERM do not
need this: Snakemake removes its lock itself then (after the running jobs, for SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import psutil


def stale_locks(directory: Path) -> list[Path]:
    """The lock files of DIR's .snakemake/locks/."""
    locks = directory / ".snakemake" / "locks"
    return sorted(locks.glob("*.lock")) if locks.is_dir() else []


def is_workflow_command(cmdline: list[str]) -> bool:
    """Whether a command line is Snakemake's or a job of this workflow's (also inside `sh -c`)."""
    words = [w for arg in cmdline for w in arg.split()]
    names = [os.path.basename(w) for w in words]
    pairs = set(zip(words, words[1:]))
    return (
        "snakemake" in names
        or ("-m", "snakemake") in pairs
        or ("-m", "drs") in pairs
        or "drs" in names[:1]
        or "torchrun" in names
    )


def live_processes(directory: Path) -> list[psutil.Process]:
    """Snakemake and job processes working in ``directory`` (or below), but for this process and
    its ancestors (make, the shell that runs this). Processes whose details cannot be read (other
    users') are left out."""
    directory = directory.resolve()
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cwd, cmdline = proc.info["cwd"], proc.info["cmdline"]
        if proc.pid in skip or not cwd or not cmdline:
            continue
        cwd = Path(cwd)
        if (cwd == directory or directory in cwd.parents) and is_workflow_command(cmdline):
            found.append(proc)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", default=".", help="Snakemake's working directory (default: .)")
    parser.add_argument("snakemake", nargs="+", help="the Snakemake command (after --), without --unlock")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    locks = stale_locks(directory)
    if not locks:
        return 0
    alive = live_processes(directory)
    if alive:
        print(f"{directory.resolve()}: a Snakemake run is still active here; not unlocking:", file=sys.stderr)
        for proc in alive:
            print(f"  pid {proc.pid}: {' '.join(proc.info['cmdline'])[:200]}", file=sys.stderr)
        print("Wait for it to end, or stop it (Ctrl-C in its terminal, or kill PID), then run again.", file=sys.stderr)
        return 1
    print(f"{directory.resolve()}: removing the lock of a killed Snakemake run (no Snakemake or job of it is running)")
    return subprocess.run([*args.snakemake, "--unlock"], cwd=directory).returncode


if __name__ == "__main__":
    sys.exit(main())
