# What each job asks for (docs/running.md: Running on a cluster; drs.config.resources). A rule that does
# real work declares `threads: job_threads(KIND)` and `resources: **job_resources(KIND, "RULE")`
# with KIND gpu_job or cpu_job and its own name (a job under torchrun asks for a GPU per process);
# a training or map-extraction rule runs its stage as `{params.launch} <stage> ...` with
# `launch=launcher(RULE)`: one process unless the config's `ddp` asks for more, one per GPU.
# Small rules (scoring, aggregating, reports) are localrules and declare no resources.

from drs.config import resources


def job_threads(kind):
    return resources.job_threads(config, kind)


def job_resources(kind, rule=None):
    return resources.job_resources(config, kind, rule)


def launcher(rule):
    return resources.launcher(config, rule)


def source_digest(*modules):
    return resources.source_digest(workflow.basedir, *modules)


def between_workflow_cache(cacheable=True):
    return resources.between_workflow_cache(
        workflow.workflow_settings.cache is not None, cacheable
    )


def voc_archives_pinned():
    return resources.voc_archives_pinned(config)
