"""What a workflow job asks for on each attempt, and when the VOC download may be cached between
workflows (drs.config.resources, the functions behind workflow/rules/resources.smk)."""

from __future__ import annotations

import pytest
import yaml
from snakemake.caching.rule import CacheFlag

from drs.config import resources
from helpers import REPO, load_workflow

RESOURCES = {
    "gpu_job": {"threads": 4, "gpu": 1, "mem_mb": 8000, "runtime": 120},
    "cpu_job": {"threads": 2, "mem_mb": 1000, "runtime": 30},
}


@pytest.mark.parametrize("kind,mem,runtime", [("gpu_job", 8000, 120), ("cpu_job", 1000, 30)])
def test_memory_and_time_double_on_each_retry(kind, mem, runtime):
    requests = resources.job_resources({"resources": RESOURCES}, kind, "train_classifier")
    assert [requests["mem_mb"](None, attempt) for attempt in (1, 2, 3)] == [mem, 2 * mem, 3 * mem]
    assert [requests["runtime"](None, attempt) for attempt in (1, 2, 3)] == [runtime, 2 * runtime, 3 * runtime]
    assert ("gpu" in requests) == (kind == "gpu_job")


def test_gpus_per_process_under_torchrun_and_threads():
    config = {"resources": RESOURCES, "ddp": {"rules": {"train_classifier": 4}}}
    assert resources.job_resources(config, "gpu_job", "train_classifier")["gpu"] == 4
    assert resources.job_resources(config, "gpu_job", "evaluate")["gpu"] == 1  # not a torchrun rule
    assert resources.job_threads(config, "gpu_job") == 4 and resources.job_threads(config, "cpu_job") == 2
    launch = resources.launcher(config, "train_classifier")
    assert launch(None, 8) == "OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 torchrun --standalone --nproc_per_node=4 -m drs"
    assert resources.launcher(config, "extract_maps")(None, 8) == "OMP_NUM_THREADS=8 MKL_NUM_THREADS=8 python -m drs"


PINNED = {"voc": {"url": "u", "md5": "a" * 32}, "aug": {"url": "v", "md5": "b" * 32}}


def _cache(archives, cache_enabled=True):
    return resources.between_workflow_cache(
        cache_enabled, resources.voc_archives_pinned({"voc2012": {"archives": archives}})
    )


def test_voc_download_is_cached_only_when_every_md5_is_pinned():
    assert _cache(PINNED) == "omit-software"
    assert _cache({**PINNED, "aug": {"url": "v", "md5": None}}) is False
    assert _cache({**PINNED, "aug": {"url": "v"}}) is False
    assert _cache({}) is False  # nothing to verify
    assert _cache(PINNED, cache_enabled=False) is False  # no --cache: no cache directive at all


@pytest.mark.parametrize("pinned", [False, True])
def test_the_download_rule_caches_as_its_archives_allow(pinned, tmp_path):
    """The workflow itself, loaded by Snakemake with --cache: config/voc2012.yaml leaves two MD5s
    unpinned (no cache); with every MD5 pinned the download is cached, keyed without the software."""
    config = yaml.safe_load((REPO / "config/voc2012.yaml").read_text())
    if pinned:
        for archive in config["voc2012"]["archives"].values():
            archive["md5"] = archive["md5"] or "c" * 32
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with load_workflow(path, tmp_path, cache=True) as workflow:
        flag = workflow.get_rule("download_voc2012").cache.flag
    assert (CacheFlag.omit_software in flag) if pinned else flag == CacheFlag(0)


def test_every_rule_names_the_conda_environment(tmp_path):
    with load_workflow(REPO / "config.yaml", tmp_path) as workflow:
        envs = {rule.name: rule.conda_env for rule in workflow.rules if rule.shellcmd}
    assert envs and set(envs.values()) == {"../../envs/drs.yaml"}, envs
    assert (REPO / "envs/drs.yaml").exists()
