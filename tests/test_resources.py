"""The workflow's helper functions in workflow/rules/common.smk, run on their own: what a job asks
for on each attempt, and when the VOC download may be cached between workflows."""

from __future__ import annotations

import re
import types

import pytest

from conftest import REPO

COMMON = REPO / "workflow" / "rules" / "common.smk"


def _functions(namespace: dict, *names: str) -> types.SimpleNamespace:
    """The top-level functions ``names`` of common.smk (plain Python), defined in ``namespace``
    (their globals: config, workflow, ...)."""
    text = COMMON.read_text()
    for name in names:
        match = re.search(rf"^def {name}\(.*?(?=^\S)", text, re.M | re.S)
        assert match, f"{COMMON}: no function {name}"
        exec(compile(match.group(0), str(COMMON), "exec"), namespace)
    return types.SimpleNamespace(**{n: namespace[n] for n in names})


def _resources(ddp=None):
    config = {
        "resources": {
            "gpu_job": {"threads": 4, "gpu": 1, "mem_mb": 8000, "runtime": 120},
            "cpu_job": {"threads": 2, "mem_mb": 1000, "runtime": 30},
        }
    }
    ddp = ddp or {}
    namespace = {
        "config": config,
        "DDP_RULES": {"train_classifier", "train_segmenter"},
        "nproc": lambda rule: ddp.get(rule, 1),
    }
    return _functions(namespace, "job_threads", "job_resources")


@pytest.mark.parametrize("kind,mem,runtime", [("gpu_job", 8000, 120), ("cpu_job", 1000, 30)])
def test_memory_and_time_double_on_each_retry(kind, mem, runtime):
    f = _resources()
    requests = f.job_resources(kind, "train_classifier")
    assert [requests["mem_mb"](None, attempt) for attempt in (1, 2, 3)] == [mem, 2 * mem, 3 * mem]
    assert [requests["runtime"](None, attempt) for attempt in (1, 2, 3)] == [runtime, 2 * runtime, 3 * runtime]
    assert ("gpu" in requests) == (kind == "gpu_job")


def test_gpus_per_process_under_torchrun_and_threads():
    f = _resources({"train_classifier": 4})
    assert f.job_resources("gpu_job", "train_classifier")["gpu"] == 4
    assert f.job_resources("gpu_job", "extract_maps")["gpu"] == 1  # not a torchrun rule
    assert f.job_threads("gpu_job") == 4 and f.job_threads("cpu_job") == 2


def _cache(archives, cache_enabled=True):
    settings = types.SimpleNamespace(cache=[] if cache_enabled else None)
    namespace = {
        "config": {"voc2012": {"archives": archives}},
        "workflow": types.SimpleNamespace(workflow_settings=settings),
    }
    f = _functions(namespace, "between_workflow_cache", "voc_archives_pinned")
    return f.between_workflow_cache(f.voc_archives_pinned())


PINNED = {"voc": {"url": "u", "md5": "a" * 32}, "aug": {"url": "v", "md5": "b" * 32}}


def test_voc_download_is_cached_only_when_every_md5_is_pinned():
    assert _cache(PINNED) == "omit-software"
    assert _cache({**PINNED, "aug": {"url": "v", "md5": None}}) is False
    assert _cache({**PINNED, "aug": {"url": "v"}}) is False
    assert _cache({}) is False  # nothing to verify
    assert _cache(PINNED, cache_enabled=False) is False  # no --cache: no cache directive at all


def test_download_rule_uses_the_pinned_rule():
    text = (REPO / "workflow/rules/data.smk").read_text()
    rule = re.search(r"^rule download_voc2012:.*?(?=^rule |\Z)", text, re.M | re.S).group(0)
    assert "cache: between_workflow_cache(voc_archives_pinned())" in rule
