"""TeleQnA scoring throughput and agreement: ours vs lm-evaluation-harness 0.4.13 (``hf`` backend).

Both score the same (context, continuation) requests, built by our prompt code for a stratified
TeleQnA sample, with the same model folder, dtype (float32) and thread count. lm-evaluation-harness
runs in its own virtual environment (``benchmarks/.lmeval-venv``, created on first use with the
pinned CPU torch and the same transformers version as ours; never a project dependency) through
its Python API: ``HFLM(...).loglikelihood(requests)``. Model loading is not timed on either side.
Ours is timed before and after lm-eval (the machine may be shared) and the mean is used.
Prints questions/s of each, the ratio (target >= 3x) and the largest per-option log-likelihood
difference (target <= 1e-4).

    python benchmarks/bench_teleqna.py                     # bundled SmolLM2-135M, 100 questions, options
    python benchmarks/bench_teleqna.py --limit 200 --mode letter --lmeval-batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / ".lmeval-venv"
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


def build_requests(model, questions, mode: str) -> list[tuple[str, str]]:
    """(context, continuation) per option of every question, zero-shot, from our prompt code."""
    from megatron_telecom.evaluation.teleqna import build_prompt

    requests = []
    for question in questions:
        context, continuations, _ = build_prompt(question, mode, [])
        requests.extend((context, c) for c in continuations)
    return requests


def time_ours(model, questions, mode: str) -> tuple[float, list[float]]:
    """Seconds and per-option log-likelihoods of our scorer over ``questions``."""
    from megatron_telecom.evaluation.model_source import default_tokens_per_batch
    from megatron_telecom.evaluation.multiple_choice import score_batch

    start = time.perf_counter()
    records = score_batch(model, questions, mode, [[] for _ in questions], default_tokens_per_batch(model.device))
    return time.perf_counter() - start, [ll for r in records for ll in r["loglik"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m")
    parser.add_argument("--data", default=None, help="TeleQnA zip/JSON (default: ../shared/data/teleqna/TeleQnA.zip)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--mode", choices=["options", "letter"], default="options")
    parser.add_argument("--lmeval-batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch

    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.teleqna import DEFAULT_DATA, read_teleqna, stratified_sample

    questions = stratified_sample(read_teleqna(args.data or DEFAULT_DATA).questions, args.limit)
    model = load_model(args.model, "float32", torch.device("cpu"))
    requests = build_requests(model, questions, args.mode)
    python = ensure_venv()
    first, ours = time_ours(model, questions, args.mode)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"model": str(model.hf_path), "batch_size": args.lmeval_batch_size,
                                    "requests": requests}))
        subprocess.run([str(python), "-c", LMEVAL_SIDE, str(spec), str(Path(tmp) / "out.json")],
                       check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        theirs = json.loads((Path(tmp) / "out.json").read_text())
    second, _ = time_ours(model, questions, args.mode)
    ours_seconds = (first + second) / 2
    diff = max(abs(a - b) for a, b in zip(ours, theirs["loglik"]))
    n = len(questions)
    print(f"model {args.model}, {n} TeleQnA questions ({len(requests)} options), mode {args.mode}, "
          f"float32 CPU, torch threads {torch.get_num_threads()}, lm-eval batch size {args.lmeval_batch_size}")
    print(f"ours:    {ours_seconds:8.1f} s  {n / ours_seconds:7.3f} questions/s  (runs: {first:.1f} s, {second:.1f} s)")
    print(f"lm-eval: {theirs['seconds']:8.1f} s  {n / theirs['seconds']:7.3f} questions/s")
    print(f"speed-up {theirs['seconds'] / ours_seconds:.2f}x (target >= 3x); "
          f"max |loglik difference| {diff:.2e} (target <= 1e-4)")


if __name__ == "__main__":
    main()
