"""The GPU kit's CPU mode end to end (benchmarks/gpu/kit.py --cpu), so the kit cannot rot.

One kit run (tiny model, real trainer children, a real SIGKILL and resume, then SFT, DPO's
reference pass and training, and in-loop evaluation) per session; the tests read its kit.json
and summary.txt. MFU peaks by device name, the time budget and the table's failed rows are
checked in-process.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _dist_helpers import REPO, run_subprocess, subprocess_env

KIT = REPO / "benchmarks" / "gpu" / "kit.py"
KIT_TIMEOUT_S = 1800  # ~2.5 min alone on 2 cores; generous for a shared, loaded machine
sys.path.insert(0, str(KIT.parent))
from kit_report import STEP_STAGES  # noqa: E402


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
    assert c["sdpa"]["from"] == "b_probe"  # the default attention is not probed twice
    assert c["local"]["core_attention"] == "DotProductAttention" and "from" not in c["local"]
    assert c["sdpa"]["micro_batches_tried"] == c["local"]["micro_batches_tried"] == [1, 2, 4]


def test_sft_step_compares_packed_training_with_the_cpu(report):
    f = report["steps"]["f_sft"]
    assert f["status"] == "ok", f
    assert f["backend"] == "SDPA, block mask"  # no Transformer Engine: THD is not built
    assert f["precision"] == "fp32"  # bf16 only where the device attends THD through TE
    assert len(f["device"]["losses"]) == f["iterations"] == 3
    assert f["device"]["losses"] == f["cpu"]["losses"]  # CPU mode: one run serves as both
    assert f["device_vs_cpu_max_rel_diff"] == 0.0 <= f["tolerance"] == 1e-3
    assert f["device"]["losses"][-1] < f["device"]["losses"][0]
    assert f["device"]["tokens_per_s"] > 0 and f["device"]["peak_memory_gib"] is None
    assert f["speed"] is None  # the bf16 ~1B run is GPU-only


def test_dpo_step_runs_the_reference_pass_then_training(report):
    g = report["steps"]["g_dpo"]
    assert g["status"] == "ok", g
    assert len(g["device"]["logps"]) == 16 and all(lp < 0 for lp in g["device"]["logps"])
    assert g["device"]["losses"][0] == math.log(2)  # policy == reference at iteration 1
    assert g["first_loss_minus_ln2"] == 0.0 and len(g["device"]["losses"]) == 3
    assert g["logps_max_rel_diff"] == g["loss_max_rel_diff"] == 0.0
    assert g["device"]["reference"]["pass_seconds"] > 0
    assert g["device"]["reference"]["tokens_per_s"] > 0
    assert g["speed"] is None


def test_evaluation_step_scores_in_loop_like_the_cpu(report):
    h = report["steps"]["h_evaluation"]
    assert h["status"] == "ok", h
    assert h["options"] == len(h["device"]["loglik"]) == 12  # 6 two-choice questions
    assert h["device"]["exam"]["overall"]["n"] == 6
    assert h["loglik_max_rel_diff"] == h["perplexity_rel_diff"] == 0.0
    assert h["device"]["perplexity"] > 1 and h["device"]["scored_tokens"] > 0
    assert h["device"]["tokens_per_s"] > 0


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
    header = summary.splitlines()[3].split()
    assert header[:4] == ["stage", "run", "backend", "tokens/s"] and "MFU" in header
    table = summary.split("\n\n")[1].splitlines()[1:]
    rows = []  # a row per run of a step that ran; one per skipped step (d, e)
    for key, step in report["steps"].items():
        rows += ([(r["stage"], r["run"]) for r in step["rows"]] if step["status"] == "ok"
                 else [(STEP_STAGES[key], key)])
    assert len(table) == len(rows) == 11
    assert {stage for stage, _ in rows} == {"CPT", "convert", "SFT", "DPO", "eval"}
    for line, (stage, run) in zip(table, rows):
        assert line.startswith(stage) and run in line and "n/a" in line  # no MFU on a CPU
    assert sum("skipped: CPU mode" in line for line in table) == 2
    for log in ("a_device_killed", "a_cpu_fp32", "f_cpu_fp32", "g_cpu_fp32_reference",
                "g_cpu_fp32", "h_cpu_fp32"):
        assert (out / "logs" / f"{log}.log").exists(), log
    assert not (out / "work").exists()
    assert not list(out.glob(".*.tmp-*"))  # outputs were renamed into place


def test_peak_by_device_name():
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
    assert "--steps 'az': use letters of 'abcdefgh'" in proc.stderr


def test_budget_cuts_child_timeouts_and_failed_steps_get_a_row(tmp_path):
    from kit import Kit
    from kit_report import summary_table

    assert Kit(tmp_path / "a", cpu=True, peak=None, timeout=300).child_timeout() == 300
    kit = Kit(tmp_path / "b", cpu=True, peak=None, timeout=300, budget=30)
    assert 25 < kit.child_timeout() <= 30
    kit.deadline = time.monotonic()  # spent
    with pytest.raises(RuntimeError, match="time budget"):
        kit.child_timeout()
    rows = summary_table({"steps": {"g_dpo": {"status": "failed",
                                              "error": "RuntimeError: g_device: exit 1\ndetails"}}})
    assert rows[1].split() == ["DPO", "g_dpo", "-", "n/a", "n/a", "n/a", "failed:", "RuntimeError:",
                               "g_device:", "exit", "1"]
