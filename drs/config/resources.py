"""What a workflow job asks of the machine or the cluster, as pure functions of the config.

A rule that does real work is of one kind, whose requests come from the config's ``resources:``
section: ``gpu_job`` (training, map extraction, evaluation: threads, gpu, mem_mb, runtime) or
``cpu_job`` (dataset synthesis or download, pseudo labels: threads, mem_mb, runtime; never gpu).
Small rules (scoring, aggregating, reports) are localrules and ask for nothing. The rules call these
through ``workflow/rules/resources.smk``; Snakemake's ``--set-threads`` and ``--set-resources`` (or a
profile's) override any value per rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from drs.config.workflow import DDP_RULES, ddp_nproc


def job_threads(config: dict, kind: str) -> int:
    """Threads of a job of this kind: capped at --cores locally, --cpus-per-task on SLURM."""
    return config["resources"][kind]["threads"]


def job_resources(config: dict, kind: str, rule: str | None = None) -> dict:
    """What a job of this kind asks for: mem_mb and runtime (minutes), both times the attempt
    (1, then 2, ... with --retries), and for a gpu_job its GPUs (``gpu``: counted against
    --resources gpu=N locally, --gpus=N on SLURM): resources.gpu_job.gpu per process, times the
    rule's process count when the config's ``ddp`` runs it under torchrun."""
    spec = config["resources"][kind]
    requests: dict = {
        "mem_mb": lambda wildcards, attempt: spec["mem_mb"] * attempt,
        "runtime": lambda wildcards, attempt: spec["runtime"] * attempt,
    }
    if kind == "gpu_job":
        requests["gpu"] = spec["gpu"] * (ddp_nproc(config, rule) if rule in DDP_RULES else 1)
    return requests


def launcher(config: dict, rule: str) -> Callable:
    """A params function: the command that runs a `drs` stage for ``rule``, each process with its
    share of the job's threads (OpenMP and MKL, which Snakemake sets to all of them): ``python -m
    drs`` for one process, else ``torchrun --standalone --nproc_per_node=N -m drs`` (free port)."""
    n = ddp_nproc(config, rule)
    command = "python -m drs" if n == 1 else f"torchrun --standalone --nproc_per_node={n} -m drs"

    def launch(wildcards, threads):
        share = max(1, threads // n)
        return f"OMP_NUM_THREADS={share} MKL_NUM_THREADS={share} {command}"

    return launch


def source_digest(basedir: str | Path, *modules: str) -> str:
    """SHA-256 (16 hex digits) of source files under ``basedir``. A param of the cached data rules:
    the between-workflow cache keys an output by its rule's command, params and inputs, so the code
    that makes the output has to be among them for a cache hit to stay valid."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update((Path(basedir) / module).read_bytes())
    return digest.hexdigest()[:16]


def between_workflow_cache(cache_enabled: bool, cacheable: bool = True) -> str | bool:
    """A ``cache:`` directive: "omit-software" (the output is keyed by the rule's command, params and
    inputs, not the software environment) when this run uses the between-workflow cache (--cache)
    and the output is cacheable; else False, which spares every other run Snakemake's "eligible for
    caching" notice."""
    return "omit-software" if cacheable and cache_enabled else False


def voc_archives_pinned(config: dict) -> bool:
    """Whether every VOC archive has its MD5 pinned: an unverified archive (md5: null) may change
    behind its URL, so its download must not be cached."""
    archives = config["voc2012"].get("archives", {})
    return bool(archives) and all(a.get("md5") for a in archives.values())
