"""Multiple-choice scoring, ours vs lm-evaluation-harness 0.4.13 (``hf`` backend): speed and equality.

Two measurements in one run, on a stratified sample of TeleQnA or ORAN-Bench, same model folder,
float32, same thread count (``--threads``, set for both through OMP_NUM_THREADS and torch):

1. Model loading excluded: both score the same (context, continuation) requests, built by our
   prompt code: ours ``accuracy.score_batch`` in this process, lm-eval's
   ``HFLM(...).loglikelihood(requests)`` in its own venv; each side times only the scoring, wall
   and CPU seconds. ``--repeat N`` lm-eval runs, each between two of ours (the machine may be
   shared: contention hits both; CPU seconds suffer less from it), and the means are compared.
2. Whole commands: ``tools/evaluate.py <benchmark> --log-samples`` against the ``lm_eval`` command
   line running our task YAML (``megatron_telecom/evaluation/lm_eval_tasks``) on the same questions
   written in the generic JSONL format (``tools/evaluate.py questions``), ``--log_samples``. Wall
   and CPU time of each process, model loading and everything included; and every per-option
   log-likelihood of lm-eval's samples compared with ours by question id (target <= 1e-4), which
   shows the shipped task configs reproduce our prompts and scores.

lm-evaluation-harness runs in its own virtual environment (``$LMEVAL_VENV``, default
``benchmarks/.lmeval-venv``, created on first use with the pinned CPU torch and our transformers
version; never a project dependency).

    python benchmarks/bench_multiple_choice.py                          # TeleQnA, 100 questions, options
    python benchmarks/bench_multiple_choice.py --benchmark oranbench --limit 200 --mode letter
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("LMEVAL_VENV", REPO / "benchmarks" / ".lmeval-venv"))  # an existing one may be named
TASKS = REPO / "megatron_telecom" / "evaluation" / "lm_eval_tasks"
LMEVAL_SIDE = r"""
import json, sys, time
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
spec = json.load(open(sys.argv[1]))
lm = HFLM(pretrained=spec["model"], device="cpu", dtype="float32", batch_size=spec["batch_size"])
requests = [Instance(request_type="loglikelihood", doc={}, arguments=(c, k), idx=i)
            for i, (c, k) in enumerate(spec["requests"])]
start, cpu = time.perf_counter(), time.process_time()
out = lm.loglikelihood(requests, disable_tqdm=True)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
json.dump({"seconds": seconds, "cpu": cpu, "loglik": [ll for ll, _ in out]}, open(sys.argv[2], "w"))
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


def time_ours(model, questions, mode: str) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds and per-option log-likelihoods of our scorer over ``questions``."""
    from megatron_telecom.evaluation.accuracy import score_batch
    from megatron_telecom.evaluation.loglikelihood import HFScorer
    from megatron_telecom.evaluation.model_source import default_tokens_per_batch

    start, cpu = time.perf_counter(), time.process_time()
    records = score_batch(HFScorer(model.model), model.tokenizer, questions, mode, [[] for _ in questions],
                          default_tokens_per_batch(model.device))
    return time.perf_counter() - start, time.process_time() - cpu, [ll for r in records for ll in r["loglik"]]


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _listed(seconds: list[float]) -> str:
    return " ".join(f"{x:.1f}" for x in seconds)


def _ratio(theirs: list[float], ours: list[float]) -> str:
    return f"{sum(theirs) / len(theirs) / (sum(ours) / len(ours)):.2f}x"


def loading_excluded(args, model, questions, env: dict[str, str]) -> None:
    """Measurement 1: the same requests, scoring time only, ours and lm-eval's runs interleaved."""
    python = ensure_venv()
    requests = build_requests(model.tokenizer, questions, args.mode)
    ours = [time_ours(model, questions, args.mode)]
    theirs = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"model": str(model.hf_path), "batch_size": args.lmeval_batch_size,
                                    "requests": requests}))
        for _ in range(args.repeat):  # ours, lm-eval, ours, ...: contention from other jobs hits both
            print(f"    ({_load()})", flush=True)
            subprocess.run([str(python), "-c", LMEVAL_SIDE, str(spec), str(Path(tmp) / "out.json")], check=True,
                           env=env)
            theirs.append(json.loads((Path(tmp) / "out.json").read_text()))
            ours.append(time_ours(model, questions, args.mode))
    diff = max(abs(a - b) for a, b in zip(ours[0][2], theirs[0]["loglik"], strict=True))
    wall, cpu = [o[0] for o in ours], [o[1] for o in ours]
    their_wall, their_cpu = [t["seconds"] for t in theirs], [t["cpu"] for t in theirs]
    n = len(questions)
    print(f"[1] model loading excluded, {n} questions ({len(requests)} options), {_load()}:")
    print(f"    ours:    wall {_listed(wall)} s, CPU {_listed(cpu)} s")
    print(f"    lm-eval: wall {_listed(their_wall)} s, CPU {_listed(their_cpu)} s")
    print(f"    speed-up (means) wall {_ratio(their_wall, wall)}, CPU {_ratio(their_cpu, cpu)} (target >= 3x); "
          f"max |loglik difference| {diff:.2e} (target <= 1e-4)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        start, cpu = time.perf_counter(), _children_cpu()
        subprocess.run(ours_cmd, check=True, env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp, capture_output=True)
        ours_seconds, ours_cpu = time.perf_counter() - start, _children_cpu() - cpu
        theirs_cmd = [str(VENV / "bin" / "lm_eval"), "--model", "hf", "--model_args",
                      f"pretrained={model.hf_path},dtype=float32", "--device", "cpu", "--batch_size",
                      str(args.lmeval_batch_size), "--include_path", str(TASKS), "--tasks", task,
                      "--log_samples", "--output_path", str(tmp / "lmeval")]
        start, cpu = time.perf_counter(), _children_cpu()
        subprocess.run(theirs_cmd, check=True, env=env, cwd=tmp, capture_output=True)
        theirs_seconds, theirs_cpu = time.perf_counter() - start, _children_cpu() - cpu
        ours = {r["id"]: r["loglik"] for r in map(json.loads, (tmp / "ours.jsonl").read_text().splitlines())}
        theirs = {}
        for path in glob.glob(str(tmp / "lmeval" / "**" / f"samples_{task}_*.jsonl"), recursive=True):
            for line in Path(path).read_text().splitlines():
                sample = json.loads(line)
                theirs[sample["doc"]["id"]] = [float(r[0][0]) for r in sample["resps"]]
    assert sorted(theirs) == sorted(ours), "lm-eval scored other questions than ours"
    diff = max(abs(a - b) for qid in ours for a, b in zip(ours[qid], theirs[qid], strict=True))
    print(f"[2] whole commands (model loading included), {len(ours)} questions, lm-eval task {task} "
          f"(our YAML), {_load()}:")
    print(f"    ours:    wall {ours_seconds:6.1f} s, CPU {ours_cpu:6.1f} s  ({' '.join(ours_cmd[1:3])} ...)")
    print(f"    lm-eval: wall {theirs_seconds:6.1f} s, CPU {theirs_cpu:6.1f} s  "
          f"(lm_eval --model hf --tasks {task} --include_path ...)")
    print(f"    speed-up wall {theirs_seconds / ours_seconds:.2f}x, CPU {theirs_cpu / ours_cpu:.2f}x; "
          f"max |loglik difference| with our task YAML "
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
    parser.add_argument("--repeat", type=int, default=1, help="lm-eval scoring runs, each between two of ours")
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
