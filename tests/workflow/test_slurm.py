"""Cluster submission: the profiles' dry runs, and the workflow on a real one-node SLURM cluster.

The `slurm` tests start SLURM on this host (tests/workflow/slurm/setup.sh: slurmctld, slurmd, slurmdbd for
sacct, MariaDB, munge; about 10 s once the packages are installed) and run the tiny config
through `--profile workflow/profiles/slurm`, beside a local run of the same targets. One SLURM
run is cut short: its train_classifier job is cancelled with scancel after its first epoch
checkpoint, and a second run resumes from it. Every subprocess has a timeout: the executor plugin
would otherwise wait forever on a cluster that stopped answering.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import BIN, REPO, TINY_CONFIG, load_workflow, snakemake

SLURM_SCRIPTS = REPO / "tests" / "workflow" / "slurm"
PROFILES = REPO / "workflow" / "profiles"
# What the SLURM runs build. Default: stages 1-3 of the main experiment, every kind of job in four
# SLURM jobs (the dataset: a CPU job; classifier training, cancelled then resumed, and map
# extraction: GPU jobs) and two local rules, so that the test stays near 3 minutes; each further
# stage adds a job and 20-40 s. DRS_SLURM_TEST_TARGETS="all" runs everything (the dry runs below
# check every job of `all` either way).
TARGETS = tuple(os.environ.get("DRS_SLURM_TEST_TARGETS", "results/drs/metrics/cam.json").split())
RUN_TIMEOUT = 480 if "DRS_SLURM_TEST_TARGETS" not in os.environ else 3600  # seconds, per Snakemake run
# jobs every SLURM run here has (rule -> wildcard values as the plugin joins them in the comment)
CORE_JOBS = {"synthesize_dataset": "", "train_classifier": "drs", "extract_maps": "drs_train"}
GPU_RULES = {"train_classifier", "extract_maps", "train_refiner", "extract_refined_maps", "train_segmenter", "evaluate"}
LOCAL_RULES = {"check_dataset", "eval_maps", "score_labels"}
SLURM_ARGS = (
    "--profile",
    str(PROFILES / "slurm"),
    "--configfile",
    str(TINY_CONFIG),
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--verbose",  # the plugin logs each sbatch call
)


# ---- dry runs: what each job asks for, per profile ---------------------------------------------


def dry_run_jobs(output: str) -> list[dict]:
    """The jobs of a `snakemake -n` output: rule, local, threads, resources (as strings)."""
    jobs, job = [], None
    for line in output.splitlines():
        head = re.match(r"^(local)?rule (\w+):$", line)
        if head:
            job = {"rule": head.group(2), "local": bool(head.group(1)), "threads": "1", "resources": {}}
            jobs.append(job)
        elif job is not None and line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            if key == "threads":
                job["threads"] = value
            elif key == "resources":
                job["resources"] = dict(item.split("=", 1) for item in value.split(", "))
            elif key == "wildcards":
                job["wildcards"] = value
        else:
            job = None
    return jobs


@pytest.mark.slow
def test_local_profile_dry_run_shows_threads_gpu_memory_and_time(workdir):
    result = snakemake(workdir, "-n", "--profile", str(PROFILES / "local"), "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {j["rule"]: j for j in dry_run_jobs(result.stdout + result.stderr)}
    train = jobs["train_classifier"]
    assert train["resources"]["gpu"] == "1" and train["resources"]["mem_mb"] == "1000"
    # config/test.yaml: 2 threads, capped at the profile's `cores: all`
    assert train["resources"]["runtime"] == "10" and train["threads"] == str(min(2, len(os.sched_getaffinity(0))))
    synth = jobs["synthesize_dataset"]
    assert "gpu" not in synth["resources"] and synth["resources"]["mem_mb"] == "1000"
    # --set-threads / --set-resources override the config's values per rule
    result = snakemake(
        workdir,
        "-n",
        "--profile",
        str(PROFILES / "local"),
        "--configfile",
        str(TINY_CONFIG),
        "--set-resources",
        "train_classifier:mem_mb=1234",
        "--set-threads",
        "train_classifier=1",
    )
    train = next(j for j in dry_run_jobs(result.stdout + result.stderr) if j["rule"] == "train_classifier")
    assert train["resources"]["mem_mb"] == "1234" and train["threads"] == "1"
    # a job under torchrun asks for one GPU per process (on a machine with that many: Snakemake
    # scales a request down to the machine's --resources)
    ddp = workdir / "ddp.yaml"
    ddp.write_text("ddp: {rules: {train_classifier: 2}}\n")
    result = snakemake(
        workdir,
        "-n",
        "--profile",
        str(PROFILES / "local"),
        "--resources",
        "gpu=4",
        "--configfile",
        str(TINY_CONFIG),
        str(ddp),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    gpus = {
        j["rule"]: j["resources"]["gpu"] for j in dry_run_jobs(result.stdout + result.stderr) if "gpu" in j["resources"]
    }
    assert gpus["train_classifier"] == "2" and gpus["extract_maps"] == "1", gpus


def declared_localrules() -> set[str]:
    """The rules the workflow runs where Snakemake runs (its `localrules:`), as Snakemake parses it."""
    with load_workflow(TINY_CONFIG) as workflow:
        # Workflow.is_local() says True for every rule outside a cluster run; the declared set is this.
        return {rule.name for rule in workflow.rules if rule.name in workflow._localrules or rule.norun}


@pytest.mark.slow
def test_slurm_profile_dry_run_gives_every_cluster_job_its_partition_memory_and_time(workdir):
    """Every job of `all` that goes to SLURM asks for the memory and time of its kind in the config
    (config/test.yaml: 1000 MB, 10 min; the profile's fallback is 2000 MB, 60 min); GPU jobs a GPU
    on the GPU partition (so a new GPU rule needs its line in the profile), the others the CPU one."""
    result = snakemake(
        workdir, "-n", "--profile", str(PROFILES / "slurm"), "--configfile", str(TINY_CONFIG), "--", "all"
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    local = declared_localrules()
    assert LOCAL_RULES | {"all"} <= local and not GPU_RULES & local
    cluster = [j for j in dry_run_jobs(out) if j["rule"] not in local]
    assert {j["rule"] for j in cluster} >= set(CORE_JOBS) | {"pseudo_labels", "train_refiner"}
    for job in cluster:
        res = job["resources"]
        assert res.get("mem_mb") == "1000" and res.get("runtime") == "10", job
        if job["rule"] in GPU_RULES or "gpu" in res:
            assert res.get("gpu") == "1" and res.get("slurm_partition") == "gpu", job
        else:
            assert "gpu" not in res and res.get("slurm_partition") == "cpu", job


# ---- a real SLURM cluster ---------------------------------------------------------------------


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "a SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "needs root: tests/workflow/slurm/setup.sh installs (apt-get) and starts the SLURM daemons"
    daemons = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "munged", "mariadbd")
    if not all(shutil.which(d) for d in daemons) and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is missing to install it"
    return None


def _slurm_required() -> bool:
    """On CI (CI=true), or with DRS_REQUIRE_SLURM=1, a missing SLURM test cluster is a failure:
    the only test of a SLURM run and its resumption must not vanish as a skip."""
    return os.environ.get("CI") == "true" or os.environ.get("DRS_REQUIRE_SLURM") == "1"


def _no_cluster(reason: str) -> None:
    """Skip (a developer's machine) or fail (CI) for want of a SLURM test cluster."""
    if _slurm_required():
        pytest.fail(f"no SLURM test cluster, required on CI (CI=true or DRS_REQUIRE_SLURM=1): {reason}")
    pytest.skip(reason)


@pytest.mark.parametrize(
    "env,fails",
    [({"CI": "true"}, True), ({"DRS_REQUIRE_SLURM": "1"}, True), ({"CI": "false"}, False), ({}, False)],
)
def test_missing_cluster_fails_on_ci_and_skips_elsewhere(monkeypatch, env, fails):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("DRS_REQUIRE_SLURM", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # pytest's skip and fail outcomes are BaseExceptions: catch either here, so that a skip where
    # a failure is due shows as this test failing, not as this test skipped
    try:
        _no_cluster("apt-get failed")
    except BaseException as outcome:  # noqa: BLE001
        caught = outcome
    else:
        caught = None
    expected = pytest.fail.Exception if fails else pytest.skip.Exception
    assert isinstance(caught, expected) and "apt-get failed" in str(caught), repr(caught)


@pytest.fixture(scope="module")
def cluster():
    """A one-node SLURM cluster with accounting, for this module; stopped (by pid) after it.
    Without one: skipped, or failed on CI (see _no_cluster)."""
    reason = _skip_reason()
    if reason:
        _no_cluster(reason)
    state = Path(tempfile.mkdtemp(prefix="drs-slurm-", dir="/tmp"))
    start = time.monotonic()
    try:
        setup = subprocess.run(
            ["bash", str(SLURM_SCRIPTS / "setup.sh"), str(state)], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "teardown.sh"), str(state), "--remove"], timeout=180)
        pytest.fail("tests/workflow/slurm/setup.sh did not finish in 900 s")
    if setup.returncode in (3, 4):  # the host has a SLURM of its own, or apt-get failed
        shutil.rmtree(state, ignore_errors=True)
        last = (setup.stderr.strip().splitlines() or [f"exit {setup.returncode}"])[-1]
        _no_cluster(f"tests/workflow/slurm/setup.sh: {last}")
    if setup.returncode != 0:
        shutil.rmtree(state, ignore_errors=True)
        pytest.fail(f"tests/workflow/slurm/setup.sh failed:\n{setup.stdout}\n{setup.stderr}")
    print(setup.stdout, f"set-up: {time.monotonic() - start:.1f} s", sep="")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "teardown.sh"), str(state), "--remove"], timeout=180)


def _start_snakemake(workdir: Path, log: Path, env: dict, *args: str) -> subprocess.Popen:
    """Snakemake in a process group of its own, so that _stop() ends its jobs too."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True
        )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the run's process group (Snakemake then cancels its SLURM jobs), SIGKILL after 30 s."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def _wait(proc: subprocess.Popen, timeout: float, log: Path) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        pytest.fail(f"{' '.join(proc.args[:6])} ... ran over {timeout} s; log tail:\n{log.read_text()[-3000:]}")


def _slurm(env: dict, *cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def slurm_runs(cluster, tmp_path_factory):
    """A local run and, beside it, the same targets through the slurm profile: a first SLURM run
    whose train_classifier job is cancelled after its first epoch checkpoint, then a second."""
    env = cluster
    base = tmp_path_factory.mktemp("slurm")
    local_dir, slurm_dir = base / "local", base / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()
    record: dict = {"local_dir": local_dir, "slurm_dir": slurm_dir}
    t0 = time.monotonic()
    procs: list[subprocess.Popen] = []
    try:
        local = _start_snakemake(
            local_dir, base / "local.log", env, "--cores", "2", "--configfile", str(TINY_CONFIG), "--", *TARGETS
        )
        procs.append(local)

        # first SLURM run: no retry, so that the cancelled job fails the run
        first_log = base / "slurm1.log"
        first = _start_snakemake(slurm_dir, first_log, env, *SLURM_ARGS, "--retries", "0", "--", *TARGETS)
        procs.append(first)
        checkpoint = slurm_dir / "results/drs/classifier/last.pt"
        deadline = time.monotonic() + 300
        while not checkpoint.exists():
            if first.poll() is not None:
                pytest.fail(f"the first SLURM run ended before any checkpoint:\n{first_log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no epoch checkpoint after 300 s:\n{first_log.read_text()[-3000:]}")
            time.sleep(0.2)
        queue = _slurm(env, "squeue", "-h", "-o", "%i %k")
        cancelled = next(
            (
                line.split()[0]
                for line in queue.splitlines()
                if line.split()[1:] == ["rule_train_classifier_wildcards_drs"]
            ),
            None,
        )
        assert cancelled, f"no train_classifier job in the queue:\n{queue}"
        _slurm(env, "scancel", cancelled)
        record.update(cancelled=cancelled, first_rc=_wait(first, 180, first_log), first_log=first_log.read_text())
        record["model_after_cancel"] = (slurm_dir / "results/drs/classifier/model.pt").exists()
        record["checkpoint_after_cancel"] = checkpoint.exists()
        if checkpoint.exists():  # the epochs done when the job died (1, or 2 when the cancel came late)
            import torch

            record["epoch_at_cancel"] = int(torch.load(checkpoint, weights_only=True)["epoch"])
        record["first_s"] = time.monotonic() - t0

        second_log = base / "slurm2.log"
        second = _start_snakemake(slurm_dir, second_log, env, *SLURM_ARGS, "--", *TARGETS)
        procs.append(second)
        record["second_rc"] = _wait(second, RUN_TIMEOUT, second_log)
        record["second_log"] = second_log.read_text()
        record["slurm_s"] = time.monotonic() - t0
        record["local_rc"] = _wait(local, RUN_TIMEOUT, base / "local.log")
        record["local_log"] = (base / "local.log").read_text()
        record["sacct"] = _slurm(
            env,
            "sacct",
            "-X",
            "-P",
            "-S",
            "now-1days",
            "-o",
            "JobID,JobName,Comment,Partition,State,ExitCode,AllocTRES",
        )
        print(f"SLURM runs: {record['slurm_s']:.1f} s (first, cancelled: {record['first_s']:.1f} s)")
        print(
            _slurm(
                env,
                "sacct",
                "-X",
                "-S",
                "now-1days",
                "-o",
                "JobID,Partition,Comment%45,State,ExitCode,AllocTRES%45,Elapsed",
            )
        )
        assert record["local_rc"] == 0, record["local_log"][-3000:]
        return record
    finally:  # a failure above leaves no Snakemake running (and the cluster's teardown cancels jobs)
        for proc in procs:
            _stop(proc)


def _sacct_rows(record: dict) -> list[dict]:
    lines = record["sacct"].strip().splitlines()
    header = lines[0].split("|")
    return [dict(zip(header, line.split("|"))) for line in lines[1:]]


def _rule_of(comment: str) -> tuple[str, str]:
    """(rule, wildcard values joined by _) from the comment the plugin gives each job."""
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", comment)
    assert match, comment
    return match.group(1), match.group(2) or ""


def _jobs_in_log(log: str) -> tuple[set, set]:
    """The jobs a Snakemake run started: (submitted ones, local ones) as (rule, wildcard values)."""
    cluster, local = set(), set()
    for kind, rule, body in re.findall(r"^(localrule|rule) (\w+):\n((?:    .*\n)+)", log, re.M):
        wildcards = re.search(r"^    wildcards: (.*)$", body, re.M)
        values = "_".join(v.split("=", 1)[1] for v in wildcards.group(1).split(", ")) if wildcards else ""
        (local if kind == "localrule" else cluster).add((rule, values))
    # a failed job's own log, which Snakemake prints, shows it as a local rule of the job's Snakemake
    return cluster, local - cluster


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_job_leaves_no_output_and_the_rerun_resumes(slurm_runs):
    assert slurm_runs["first_rc"] != 0, slurm_runs["first_log"][-3000:]
    assert "SLURM status is: 'CANCELLED'" in slurm_runs["first_log"], slurm_runs["first_log"][-3000:]
    assert not slurm_runs["model_after_cancel"], "a cancelled training left model.pt"
    assert slurm_runs["checkpoint_after_cancel"]
    assert slurm_runs["second_rc"] == 0, slurm_runs["second_log"][-3000:]
    log = (slurm_runs["slurm_dir"] / "results/logs/train_classifier/drs.log").read_text()
    # the rerun resumes from exactly the checkpoint the cancelled job left
    done = slurm_runs["epoch_at_cancel"]
    assert re.search(rf"resuming from \S+last\.pt after epoch {done} of 2", log), log
    # the resumed training ends where an uninterrupted one ends, bit for bit (CPU, same threads)
    import torch

    resumed = torch.load(slurm_runs["slurm_dir"] / "results/drs/classifier/model.pt", weights_only=True)
    straight = torch.load(slurm_runs["local_dir"] / "results/drs/classifier/model.pt", weights_only=True)
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    assert all(torch.equal(resumed["state_dict"][k], straight["state_dict"][k]) for k in straight["state_dict"])


@pytest.mark.slurm
@pytest.mark.slow
def test_every_cluster_rule_ran_as_a_slurm_job_and_succeeded(slurm_runs):
    submitted, local = set(), set()
    for log in (slurm_runs["first_log"], slurm_runs["second_log"]):
        jobs = _jobs_in_log(log)
        submitted |= jobs[0]
        local |= jobs[1]
    assert set(CORE_JOBS.items()) <= submitted
    assert {rule for rule, _ in local} >= {"check_dataset", "eval_maps"}
    assert not {rule for rule, _ in submitted} & declared_localrules()
    done: dict[tuple[str, str], dict] = {}
    for row in _sacct_rows(slurm_runs):
        job = _rule_of(row["Comment"])
        assert job in submitted, f"unexpected SLURM job {row}"
        if row["JobID"] == slurm_runs["cancelled"]:
            assert row["State"].startswith("CANCELLED") and job == ("train_classifier", "drs"), row
            continue
        assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", row
        done[job] = row
    assert set(done) == submitted, f"submitted without a completed SLURM job: {submitted - set(done)}"
    for (rule, _), row in done.items():
        if rule in GPU_RULES:
            assert row["Partition"] == "gpu" and "gres/gpu=1" in row["AllocTRES"], row
        else:
            assert row["Partition"] == "cpu" and "gres/gpu" not in row["AllocTRES"], row


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_lines_carry_each_jobs_request(slurm_runs):
    calls = re.findall(r"^sbatch call: (.*)$", slurm_runs["first_log"] + slurm_runs["second_log"], re.M)
    by_rule = {_rule_of(re.search(r"--comment (\S+)", c).group(1))[0]: c for c in calls}
    assert set(by_rule) >= set(CORE_JOBS)
    for rule, call in by_rule.items():
        # config/test.yaml: 2 threads, 1000 MB, 10 minutes for every kind of job
        assert "--cpus-per-task=2" in call and "--mem 1000" in call and "-t 10" in call, call
        if rule in GPU_RULES:
            assert "--gpus=1" in call and "-p gpu" in call, call
        else:
            assert "--gpus" not in call and "-p cpu" in call, call
    # no GPU on this node (SLURM gives the job CUDA_VISIBLE_DEVICES=0 all the same): the jobs say
    # they run on the CPU
    for log in ("train_classifier/drs.log", "extract_maps/drs_train.log"):
        assert "on cpu (" in (slurm_runs["slurm_dir"] / "results/logs" / log).read_text(), log


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_outputs_match_the_local_run(slurm_runs):
    local_results = slurm_runs["local_dir"] / "results"
    names = [p.relative_to(local_results) for p in local_results.glob("*/metrics/*.json")]
    assert Path("drs/metrics/cam.json") in names
    timing = {"seconds"}  # how long a stage took (segmentation.json) differs from run to run
    for name in [Path("data/dataset_check.json"), *names]:
        on_slurm = json.loads((slurm_runs["slurm_dir"] / "results" / name).read_text())
        local = json.loads((local_results / name).read_text())
        assert {k: v for k, v in on_slurm.items() if k not in timing} == {
            k: v for k, v in local.items() if k not in timing
        }, name
    for path in sorted(local_results.glob("*/pseudo_labels/*.png")):
        assert (slurm_runs["slurm_dir"] / "results" / path.relative_to(local_results)).read_bytes() == path.read_bytes()
