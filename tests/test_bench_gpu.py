"""`drs bench gpu`: the CPU smoke run (--tiny) of every stage, its projection, its imports on a
machine without snakemake, jsonschema or pydensecrf, and its stage names.

The runs go through a subprocess: ``--tiny`` sets torch to one thread, which must not leak into the
other tests of the session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from drs.bench.gpu import EVALUATIONS, STAGES, VOC_TRAIN_AUG, VOC_VAL, bench_gpu, projection, reference_settings
from drs.cli import main
from drs.errors import UserError
from helpers import REPO

BLOCKED = ("snakemake", "jsonschema", "pydensecrf")

# `python -m drs ...` behind a meta-path finder that refuses the modules a bare GPU node lacks;
# prints which of them (and which top-level packages) the command loaded
WITHOUT = f"""
import json, runpy, sys
BLOCKED = {BLOCKED!r}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, Refuse())
sys.argv = ["drs", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("drs", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print("LOADED=" + json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
sys.exit(code)
"""


def _drs(*args: str, wrapper: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", wrapper, *args] if wrapper else [sys.executable, "-m", "drs", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_tiny_runs_every_stage_on_the_cpu_in_under_a_minute(tmp_path):
    out, table = tmp_path / "gpu.json", tmp_path / "gpu.md"
    start = time.perf_counter()
    done = _drs("bench", "gpu", "--tiny", "--device", "cpu", "--cache", str(tmp_path), "--out", str(out),
                "--markdown", str(table))  # fmt: skip
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert seconds < 60, f"--tiny took {seconds:.0f} s"
    r = json.loads(out.read_text())
    assert r["tiny"] and r["device"] == "cpu" and r["amp"] == "off (fp32)" and r["torch"]
    assert list(r["stages"]) == list(STAGES)
    for name, s in r["stages"].items():
        assert "skipped" not in s and "error" not in s, (name, s)
        assert s["images"] > 0 and s["seconds"] > 0 and s["seconds_per_step"] > 0 and s["images_per_s"] > 0, name
        if name != "crf":
            assert 0 <= s["input_wait_share"] < 1 and s["bound"] in ("input-bound", "CPU-bound"), name
            assert s["peak_memory_mb"] is None  # no GPU
        if name.endswith("_train"):
            assert s["loss_finite"], name
    assert r["stages"]["deeplabv2_train"]["accumulation"] == 2
    p = r["projection"]
    assert list(p["stages"]) == list(STAGES) and p["not_measured"] == []
    assert all(stage["hours"] > 0 for stage in p["stages"].values())
    assert p["gpu_hours_total"] > 0
    text = table.read_text()
    for name in STAGES:
        assert f"| {name} |" in text
    assert "Projected total:" in text and "smoke run" in text


def test_projection_is_the_reference_run_at_the_measured_rates():
    ref = reference_settings()
    stages = {
        "classifier_train": {"images_per_s": 100.0, "seconds_per_step": 0.1},
        "deeplabv2_train": {"images_per_s": 20.0, "seconds_per_step": 0.5},
        "deeplabv3plus_eval": {"images_per_s": 10.0, "seconds_per_step": 0.1},
        "deeplabv2_eval": {"images_per_s": 1000.0, "seconds_per_step": 0.001},
        "crf": {"images_per_s": 1.0, "seconds_per_step": 1.0},
    }
    p = projection(stages, ref)
    classifier = ref.classifier.epochs * (VOC_TRAIN_AUG // ref.classifier.batch_size * ref.classifier.batch_size)
    assert p["stages"]["classifier_train"]["hours"] == pytest.approx(classifier / 100 / 3600)
    assert p["stages"]["deeplabv2_train"]["count"] == ref.deeplabv2.iterations == 20000
    assert p["stages"]["deeplabv2_train"]["hours"] == pytest.approx(20000 * 0.5 / 3600)
    assert p["stages"]["crf"]["hours"] == pytest.approx(2 * VOC_VAL / 3600)
    # each evaluation holds its GPU for the longer of itself and its CRF (VOC_VAL images at 1 img/s)
    assert set(EVALUATIONS) <= set(p["stages"])
    crf_each = VOC_VAL / 3600
    expected = classifier / 100 / 3600 + 20000 * 0.5 / 3600 + max(VOC_VAL / 10 / 3600, crf_each) + crf_each
    assert p["gpu_hours_total"] == pytest.approx(expected)
    assert p["not_measured"] == ["maps_extract", "refiner_train", "deeplabv3plus_train"]


def test_reference_settings_are_the_voc_configs():
    ref = reference_settings()
    assert (ref.classifier.batch_size, ref.classifier.crop_size, ref.classifier.epochs) == (10, 320, 15)
    assert (ref.segmenter.batch_size, ref.segmenter.crop_size, ref.segmenter.backbone) == (32, 513, "resnet101")
    assert (ref.deeplabv2.batch_size, ref.deeplabv2.accumulation, ref.deeplabv2.crop_size) == (5, 2, 321)
    assert ref.maps.scales == [256, 320, 384]
    assert {ref.classifier.pretrained, ref.segmenter.pretrained, ref.deeplabv2.pretrained} == {"none"}


def test_runs_without_snakemake_jsonschema_or_pydensecrf(tmp_path):
    out = tmp_path / "gpu.json"
    done = _drs("bench", "gpu", "--tiny", "--device", "cpu", "--stages", "classifier_train", "crf", "--cache",
                str(tmp_path), "--out", str(out), wrapper=WITHOUT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.rsplit("LOADED=", 1)[1])
    assert not set(BLOCKED) & set(loaded), loaded
    r = json.loads(out.read_text())
    assert r["stages"]["classifier_train"]["images_per_s"] > 0
    assert "pydensecrf is not installed" in r["stages"]["crf"]["skipped"]
    assert "| crf | dense CRF | pydensecrf is not installed" in done.stdout
    assert "crf" in r["projection"]["not_measured"] and r["projection"]["gpu_hours_total"] > 0


def test_a_bad_stage_name_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "gpu", "--tiny", "--stages", "classifier_train", "deeplab_train"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown stage 'deeplab_train'" in err and "deeplabv2_train" in err and "maps_extract" in err
    with pytest.raises(UserError, match=r"unknown stage\(s\) \['nope'\]"):
        bench_gpu(stages=["nope"])
