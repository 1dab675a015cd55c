"""The GPU kit's CPU mode end to end (benchmarks/gpu/kit.py --cpu), so the kit cannot rot.

One kit run (tiny model, real trainer children, a real SIGKILL and resume) per session; the
tests read its kit.json and summary.txt. MFU peaks by device name are checked in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _dist_helpers import REPO, run_subprocess, subprocess_env

KIT = REPO / "benchmarks" / "gpu" / "kit.py"
KIT_TIMEOUT_S = 1800  # ~2 min alone on 2 cores; generous for a shared, loaded machine


@pytest.fixture(scope="module")
def kit_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("kit") / "out"
    proc = run_subprocess([sys.executable, str(KIT), "--cpu", "--output-dir", str(out)],
                          env=subprocess_env(), timeout=KIT_TIMEOUT_S, cwd=REPO)
    return out, proc


@pytest.fixture(scope="module")
def report(kit_run) -> dict:
    out, proc = kit_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((out / "kit.json").read_text())


def test_correctness_step_compares_runs_and_resumes_bitwise(report):
    a = report["steps"]["a_correctness"]
    assert a["status"] == "ok", a
    assert len(a["cpu_losses"]) == len(a["device_losses"]) == a["iterations"] == 6
    assert a["device_vs_cpu_max_rel_diff"] <= a["device_vs_cpu_tolerance"]
    assert a["bf16_losses"][-1] < a["bf16_losses"][0]
    assert a["killed_after_checkpoint"] == 3
    assert a["resumed_losses"] == a["device_losses"][3:]
    assert a["resume_bitwise_identical"] is True


def test_speed_and_attention_steps_report_figures(report):
    b, c = report["steps"]["b_speed"], report["steps"]["c_attention"]
    assert b["status"] == "ok", b
    assert b["core_attention"] == "SDPADotProductAttention"  # the default without TE
    assert b["micro_batch_size"] == 4  # the CPU mode's cap: tiny fits
    for loop in ("trainer", "bare"):
        assert b[loop]["tokens_per_s"] > 0 and b[loop]["tflops_per_device"] > 0
        assert b[loop]["mfu_pct"] is None  # no GPU peak on a CPU
    assert c["status"] == "ok", c
    assert c["sdpa"]["core_attention"] == "SDPADotProductAttention"
    assert c["local"]["core_attention"] == "DotProductAttention"
    assert c["sdpa"]["micro_batches_tried"] == [1, 2, 4]


def test_gpu_only_steps_skip_with_reasons(report):
    d, e = report["steps"]["d_conversion"], report["steps"]["e_fp8"]
    assert d["status"] == "skipped"
    converter = (REPO / "tools" / "convert_checkpoint.py").exists()
    assert d["reason"] == ("CPU mode (the converter's own tests run verify on CPU)" if converter
                           else "converter not available")
    assert e == {**e, "status": "skipped",
                 "reason": "CPU mode (FP8 needs Transformer Engine on Hopper or newer GPUs)"}


def test_summary_and_logs_written(kit_run, report):
    out, proc = kit_run
    summary = (out / "summary.txt").read_text()
    assert summary in proc.stdout
    for key in report["steps"]:
        assert key in summary
    assert "bitwise identical: True" in summary
    assert (out / "logs" / "a_device_killed.log").exists()
    assert not (out / "work").exists()
    assert not list(out.glob(".*.tmp-*"))  # outputs were renamed into place


def test_peak_by_device_name():
    sys.path.insert(0, str(KIT.parent))
    from kit import peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA GH200 480GB") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA L40S") == 362.0
    assert peak_tflops("NVIDIA L4") == 121.0
    assert peak_tflops("Some Future GPU") is None


def test_bad_steps_flag_fails_fast(tmp_path):
    proc = run_subprocess([sys.executable, str(KIT), "--cpu", "--output-dir", str(tmp_path),
                           "--steps", "az"], env=subprocess_env(), timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "--steps 'az': use letters of 'abcde'" in proc.stderr
