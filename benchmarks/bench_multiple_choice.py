"""Multiple-choice scoring, ours vs lm-evaluation-harness 0.4.13 (``hf`` backend): speed and equality.

Two measurements in one run, on a stratified sample of TeleQnA or ORAN-Bench, same model folder,
float32, same thread count (``--threads``, set for both through OMP_NUM_THREADS and torch):

1. Model loading excluded: both score the same (context, continuation) requests, built by our
   prompt code: ours ``accuracy.score_batch`` in this process, lm-eval's
   ``HFLM(...).loglikelihood(requests)`` in its own venv; each side times only the scoring. Ours is
   timed before and after lm-eval (the machine may be shared) and the mean is used.
2. Whole commands: ``tools/evaluate.py <benchmark> --log-samples`` against the ``lm_eval`` command
   line running our task YAML (``megatron_telecom/evaluation/lm_eval_tasks``) on the same questions
   written in the generic JSONL format (``tools/evaluate.py questions``), ``--log_samples``. Wall
   time of each process, model loading and everything included; and every per-option
   log-likelihood of lm-eval's samples compared with ours by question id (target <= 1e-4), which
   shows the shipped task configs reproduce our prompts and scores.

lm-evaluation-harness runs in its own virtual environment (``benchmarks/.lmeval-venv``, created on
first use with the pinned CPU torch and our transformers version; never a project dependency).

    python benchmarks/bench_multiple_choice.py                          # TeleQnA, 100 questions, options
    python benchmarks/bench_multiple_choice.py --benchmark oranbench --limit 200 --mode letter
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / ".lmeval-venv"
TASKS = REPO / "megatron_telecom" / "evaluation" / "lm_eval_tasks"
LMEVAL_SIDE = r"""
import json, sys, time
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
spec = json.load(open(sys.argv[1]))
lm = HFLM(pretrained=spec["model"], device="cpu", dtype="float32", batch_size=spec["batch_size"])
requests = [Instance(request_type="loglikelihood", doc={}, arguments=(c, k), idx=i)
            for i, (c, k) in enumerate(spec["requests"])]
start = time.perf_counter()
out = lm.loglikelihood(requests, disable_tqdm=True)
seconds = time.perf_counter() - start
json.dump({"seconds": seconds, "loglik": [ll for ll, _ in out]}, open(sys.argv[2], "w"))
"""


def ensure_venv() -> Path:
    """The benchmark's own environment with lm-evaluation-harness 0.4.13 (created once)."""
    python = VENV / "bin" / "python"
    if not (VENV / ".ready").is_file():
        import transformers

        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # the pinned CPU build, before lm-eval
        subprocess.run([*pip, "lm_eval[hf]==0.4.13", f"transformers=={transformers.__version__}"], check=True)
        (VENV / ".ready").touch()
    return python


def build_requests(tokenizer, questions, mode: str) -> list[tuple[str, str]]:
    """(context, continuation) per option of every question, zero-shot, from our prompt code."""
    from megatron_telecom.evaluation.questions import build_prompt

    requests = []
    for question in questions:
        context, continuations, _ = build_prompt(question, mode, [])
        requests.extend((context, c) for c in continuations)
    return requests


def time_ours(model, questions, mode: str) -> tuple[float, list[float]]:
    """Seconds and per-option log-likelihoods of our scorer over ``questions``."""
    from megatron_telecom.evaluation.accuracy import score_batch
    from megatron_telecom.evaluation.loglikelihood import HFScorer
    from megatron_telecom.evaluation.model_source import default_tokens_per_batch

    start = time.perf_counter()
    records = score_batch(HFScorer(model.model), model.tokenizer, questions, mode, [[] for _ in questions],
                          default_tokens_per_batch(model.device))
    return time.perf_counter() - start, [ll for r in records for ll in r["loglik"]]


def loading_excluded(args, model, questions, env: dict[str, str]) -> None:
    """Measurement 1: the same requests, scoring time only."""
    python = ensure_venv()
    requests = build_requests(model.tokenizer, questions, args.mode)
    first, ours = time_ours(model, questions, args.mode)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"model": str(model.hf_path), "batch_size": args.lmeval_batch_size,
                                    "requests": requests}))
        subprocess.run([str(python), "-c", LMEVAL_SIDE, str(spec), str(Path(tmp) / "out.json")], check=True,
                       env=env)
        theirs = json.loads((Path(tmp) / "out.json").read_text())
    second, _ = time_ours(model, questions, args.mode)
    ours_seconds = (first + second) / 2
    diff = max(abs(a - b) for a, b in zip(ours, theirs["loglik"]))
    n = len(questions)
    print(f"[1] model loading excluded, {n} questions ({len(requests)} options):")
    print(f"    ours:    {ours_seconds:8.1f} s  {n / ours_seconds:7.3f} questions/s  (runs: {first:.1f} s, {second:.1f} s)")
    print(f"    lm-eval: {theirs['seconds']:8.1f} s  {n / theirs['seconds']:7.3f} questions/s")
    print(f"    speed-up {theirs['seconds'] / ours_seconds:.2f}x (target >= 3x); "
          f"max |loglik difference| {diff:.2e} (target <= 1e-4)")


def whole_commands(args, model, questions, env: dict[str, str]) -> None:
    """Measurement 2: ``tools/evaluate.py`` vs ``lm_eval`` with our task YAML, whole processes."""
    from megatron_telecom.evaluation.questions import question_record

    task = args.benchmark + ("_letter" if args.mode == "letter" else "")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / f"{args.benchmark}.jsonl").write_text("".join(json.dumps(question_record(q)) + "\n" for q in questions))
        ours_cmd = [sys.executable, str(REPO / "tools" / "evaluate.py"), "exam", "--model", str(model.hf_path),
                    "--dtype", "float32", "--data", str(tmp / f"{args.benchmark}.jsonl"), "--mode", args.mode,
                    "--log-samples", str(tmp / "ours.jsonl"), "--output", str(tmp / "ours.json")]
        start = time.perf_counter()
        subprocess.run(ours_cmd, check=True, env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp, capture_output=True)
        ours_seconds = time.perf_counter() - start
        theirs_cmd = [str(VENV / "bin" / "lm_eval"), "--model", "hf", "--model_args",
                      f"pretrained={model.hf_path},dtype=float32", "--device", "cpu", "--batch_size",
                      str(args.lmeval_batch_size), "--include_path", str(TASKS), "--tasks", task,
                      "--log_samples", "--output_path", str(tmp / "lmeval")]
        start = time.perf_counter()
        subprocess.run(theirs_cmd, check=True, env=env, cwd=tmp, capture_output=True)
        theirs_seconds = time.perf_counter() - start
        ours = {r["id"]: r["loglik"] for r in map(json.loads, (tmp / "ours.jsonl").read_text().splitlines())}
        theirs = {}
        for path in glob.glob(str(tmp / "lmeval" / "**" / f"samples_{task}_*.jsonl"), recursive=True):
            for line in Path(path).read_text().splitlines():
                sample = json.loads(line)
                theirs[sample["doc"]["id"]] = [float(r[0][0]) for r in sample["resps"]]
    assert sorted(theirs) == sorted(ours), "lm-eval scored other questions than ours"
    diff = max(abs(a - b) for qid in ours for a, b in zip(ours[qid], theirs[qid], strict=True))
    print(f"[2] whole commands (model loading included), {len(ours)} questions, lm-eval task {task} "
          f"(our YAML):")
    print(f"    ours:    {ours_seconds:8.1f} s  ({' '.join(ours_cmd[1:3])} ...)")
    print(f"    lm-eval: {theirs_seconds:8.1f} s  (lm_eval --model hf --tasks {task} --include_path ...)")
    print(f"    speed-up {theirs_seconds / ours_seconds:.2f}x; max |loglik difference| with our task YAML "
          f"{diff:.2e} over {sum(map(len, ours.values()))} options (target <= 1e-4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m")
    parser.add_argument("--benchmark", choices=["teleqna", "oranbench"], default="teleqna")
    parser.add_argument("--data", default=None, help="the benchmark's file or folder (default: ../shared/data)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--mode", choices=["options", "letter"], default="options")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    parser.add_argument("--lmeval-batch-size", type=int, default=16)
    parser.add_argument("--skip", choices=["loading-excluded", "whole-commands"], default=None)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from megatron_telecom.evaluation.benchmarks import read_benchmark
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.questions import stratified_sample

    torch.set_num_threads(args.threads)
    questions = stratified_sample(read_benchmark(args.benchmark, args.data).questions, args.limit)
    model = load_model(args.model, "float32", torch.device("cpu"))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    print(f"model {args.model}, {args.benchmark}, {len(questions)} stratified questions, mode {args.mode}, "
          f"float32 CPU, {args.threads} thread(s) each, lm-eval batch size {args.lmeval_batch_size}")
    if args.skip != "loading-excluded":
        loading_excluded(args, model, questions, env)
    if args.skip != "whole-commands":
        ensure_venv()
        whole_commands(args, model, questions, env)


if __name__ == "__main__":
    main()
