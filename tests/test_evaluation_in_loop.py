"""In-loop evaluation == tools/evaluate.py on the exported checkpoint of the same iteration.

The trainer scores a generic-JSONL exam and a held-out file with the in-memory megatron model
(TP=1, TP=2, PP=2, PP=2 with an interleaved schedule (VPP=2), and DP=2 where each replica scores
half the questions; real torchrun + gloo); ``tools/evaluate.py exam``/``perplexity`` then score the
checkpoint saved at that iteration (exported to HF). Per-option log-likelihoods must agree to 1e-4
(fp32), and the figures must reach the log line, TensorBoard, the metrics file and the plot.
"""

from __future__ import annotations

import copy
import json
import runpy
import sys
from pathlib import Path

import pytest
from _dist_helpers import (
    REPO,
    read_jsonl,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    tiny_train_args,
    write_token_dataset,
)

evaluate_main = runpy.run_path(str(REPO / "tools" / "evaluate.py"))["main"]

EXAM = [
    ("Which network function selects the SMF for a PDU session?", ["AMF", "UPF", "PCF", "NRF"], 0, "core"),
    ("Which interface connects the gNB-CU and the gNB-DU?", ["F1", "Xn", "NG-U"], 0, "ran"),
    ("What does HARQ combine?", ["Retransmissions of a transport block", "Two carriers"], 0, "ran"),
    ("Which layer performs header compression in NR?", ["PDCP", "RLC", "MAC", "PHY"], 0, "ran"),
    ("Which protocol carries NAS messages between UE and AMF?", ["N1 over NGAP", "GTP-U", "SCTP only"], 0,
     "core"),
    ("What is the subcarrier spacing of NR numerology 1?", ["30 kHz", "15 kHz", "60 kHz", "120 kHz"], 0, "ran"),
]
HELD_OUT = ["The AMF selects an SMF for the PDU session and forwards the N1 SM container to it. " * 3,
            "The gNB-DU hosts the RLC, MAC and PHY layers; the gNB-CU hosts RRC and PDCP."]


@pytest.fixture(scope="module")
def in_loop_inputs(evaluation_tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The tiny HF model with its two layers repeated (four: PP=2 x VPP=2 gives each chunk one) as a
    megatron checkpoint, a token dataset, an exam and a held-out file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("in_loop")
    model = AutoModelForCausalLM.from_pretrained(evaluation_tiny_model)
    model.model.layers.extend(copy.deepcopy(list(model.model.layers)))
    model.config.num_hidden_layers = 4
    model.save_pretrained(root / "hf")
    AutoTokenizer.from_pretrained(evaluation_tiny_model).save_pretrained(root / "hf")
    script = ("import sys\nfrom megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore\n"
              "convert_hf_to_mcore(sys.argv[1], sys.argv[2])\n")
    proc = run_subprocess([sys.executable, "-c", script, str(root / "hf"), str(root / "base")],
                          env=subprocess_env(), timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    exam = root / "exam.jsonl"
    exam.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a, "category": k}) + "\n"
                            for q, c, a, k in EXAM))
    held_out = root / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"text": t}) + "\n" for t in HELD_OUT))
    return {"base": root / "base", "data": write_token_dataset(root / "data" / "tokens"), "exam": exam,
            "held_out": held_out, "hf": root / "hf"}


def _train(inputs: dict[str, Path], out: Path, nproc: int, **layout) -> Path:
    args = tiny_train_args(
        inputs["data"], cache=out / "cache", train_iters=2, model=None, num_layers=None, vocab_size=None,
        tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(inputs["hf"]), load=str(inputs["base"]),
        finetune=True, save=str(out / "ckpt"), save_interval=2, eval_interval=2, eval_iters=0,
        global_batch_size=4, micro_batch_size=2,
        eval_benchmarks=f"{inputs['exam']}:6", eval_perplexity_inputs=str(inputs["held_out"]),
        eval_perplexity_seq_length=32, eval_log_samples=str(out / "samples"),
        log_metrics_file=str(out / "metrics.jsonl"), tensorboard_dir=str(out / "tb"), **layout)
    proc = run_torchrun(nproc, args, timeout=400)
    assert " benchmarks at iteration 2 | exam acc: " in proc.stdout
    return out


@pytest.mark.torchrun
@pytest.mark.parametrize("nproc,layout", [(1, {}), (2, {"tensor_model_parallel_size": 2}),
                                          (2, {"pipeline_model_parallel_size": 2}),
                                          (2, {"pipeline_model_parallel_size": 2,
                                               "num_layers_per_virtual_pipeline_stage": 1}),
                                          (2, {"dp": True})],
                         ids=["tp1", "tp2", "pp2", "pp2-vpp2", "dp2"])
def test_in_loop_equals_offline_on_the_exported_checkpoint(in_loop_inputs, tmp_path, monkeypatch, nproc,
                                                           layout):
    monkeypatch.setenv("MEGATRON_TELECOM_CACHE", str(tmp_path / "cache"))
    run = _train(in_loop_inputs, tmp_path, nproc, **{k: v for k, v in layout.items() if k != "dp"})
    in_loop = {r["id"]: r for r in read_jsonl(run / "samples" / "iter_0000002" / "exam.jsonl")}
    assert evaluate_main(["exam", "--model", str(run / "ckpt"), "--data", str(in_loop_inputs["exam"]),
                          "--log-samples", str(tmp_path / "offline.jsonl"), "--output", str(tmp_path / "r.json"),
                          "--tokens-per-batch", "512"]) == 0
    offline = {r["id"]: r for r in read_jsonl(tmp_path / "offline.jsonl")}
    assert sorted(in_loop) == sorted(offline) and len(offline) == len(EXAM)
    for qid, record in offline.items():
        assert in_loop[qid]["num_tokens"] == record["num_tokens"]
        assert in_loop[qid]["loglik"] == pytest.approx(record["loglik"], abs=1e-4), qid
    assert evaluate_main(["perplexity", "--model", str(run / "ckpt"), "--input", str(in_loop_inputs["held_out"]),
                          "--seq-length", "32", "--output", str(tmp_path / "r.json")]) == 0
    offline_ppl = json.loads((tmp_path / "r.json").read_text())["perplexity"][str(in_loop_inputs["held_out"])]
    record = next(r for r in read_jsonl(run / "metrics.jsonl") if "benchmarks" in r)
    in_loop_ppl = record["heldout_perplexity"][str(in_loop_inputs["held_out"])]
    assert in_loop_ppl["tokens"] == offline_ppl["tokens"]
    assert in_loop_ppl["perplexity"] == pytest.approx(offline_ppl["perplexity"], rel=1e-5)
    assert record["iteration"] == 2 and record["benchmark_seconds"] > 0
    assert set(record["benchmarks"]["exam"]["categories"]) == {"core", "ran"}
    if nproc == 1:  # reporting sinks, checked once
        _check_reporting(run, tmp_path)


def _check_reporting(run: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from megatron_telecom.training.loss_curves import plot_loss_curves, read_benchmark_curves

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"benchmark/exam/overall/acc", "benchmark-seconds"} <= set(tags)
    assert any(t.startswith("heldout perplexity/") for t in tags)
    curves = read_benchmark_curves(run / "metrics.jsonl")
    assert set(curves) >= {"exam acc", "exam majority"} and list(curves["exam acc"]) == [2]
    plot_loss_curves(run / "metrics.jsonl", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_benchmark_flags_parse_from_yaml_and_refuse_bad_specs(tmp_path):
    from megatron_telecom.arguments import parse_args
    from megatron_telecom.training.benchmark_eval import BenchmarkEvaluation, parse_benchmark
    from megatron_telecom.training.config import PretrainConfig

    (tmp_path / "run.yaml").write_text("eval_benchmarks: [teleqna:300, oranbench=/data/oran:200]\n"
                                       "eval_perplexity_inputs: [heldout.jsonl]\neval_benchmark_interval: 50\n")
    cfg = parse_args(PretrainConfig, ["--config", str(tmp_path / "run.yaml")])
    assert cfg.benchmark_eval.eval_benchmarks == ["teleqna:300", "oranbench=/data/oran:200"]
    assert cfg.benchmark_eval.eval_benchmark_interval == 50
    assert parse_benchmark("oranbench=/data/oran:200") == ("oranbench", "oranbench", "/data/oran", 200)
    assert parse_benchmark("exams/teleqna.jsonl:40") == ("teleqna", "jsonl", "exams/teleqna.jsonl", 40)
    for bad in ("teleqna", "teleqna:0", "mmlu:10", ":5"):
        with pytest.raises(ValueError, match="--eval-benchmarks"):
            parse_benchmark(bad)
    with pytest.raises(ValueError, match="HuggingFaceTokenizer"):
        BenchmarkEvaluation(cfg.benchmark_eval, eval_interval=10, tokenizer_type="NullTokenizer",
                            tokenizer_model=None, seq_length=64)
