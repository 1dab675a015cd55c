"""Generative evaluation, ours vs lm-evaluation-harness 0.4.13 ``generate_until`` (``hf`` backend):
equality of the greedy outputs and metrics, and speed.

Two measurements in one run on a stratified TeleQnA-open sample, same model folder, float32, same
thread count (``--threads``) and batch size for both:

1. Same requests, generation only (model loading excluded), on the first ``--parity-limit``
   questions: ours ``open_generation.greedy_generate`` in this process, lm-eval's
   ``HFLM(...).generate_until(requests)`` in its own venv with the same prompts, stop sequences
   and token limit; lm-eval's token output is recorded at its ``_model_generate``, and each of our
   answers must be the same tokens (through the one that ended it) and the same text.
2. Whole commands on ``--limit`` questions: ``tools/evaluate.py open`` on the sample written as
   the generic open-ended JSONL against the ``lm_eval`` command running our ``teleqna_open`` task
   YAML with ``--log_samples``; wall and CPU seconds of each process (everything included); every
   answer compared by question id, and every overall metric (lm-eval's own mean, bleu and chrf
   aggregations) compared with ours.

lm-evaluation-harness runs in its own virtual environment (``$LMEVAL_VENV``, default
``benchmarks/.lmeval-venv``, created on first use as ``bench_multiple_choice.py`` does).

    python benchmarks/bench_generative.py                         # 100 questions, parity on 50
    LMEVAL_VENV=/work/lmeval-venv python benchmarks/bench_generative.py --limit 100 --parity-limit 50
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_multiple_choice import REPO, TASKS, _children_cpu, _load, ensure_venv  # noqa: E402

LMEVAL_SIDE = r"""
import json, sys, time
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
spec = json.load(open(sys.argv[1]))
lm = HFLM(pretrained=spec["model"], device="cpu", dtype="float32", batch_size=spec["batch_size"])
tokens, inner = {}, lm._model_generate
def recording(context, **kwargs):  # lm-eval's own generate; the rows it returns are recorded
    out = inner(context, **kwargs)
    for ids, mask, row in zip(context.tolist(), kwargs["attention_mask"].tolist(), out.tolist()):
        tokens[json.dumps([t for t, m in zip(ids, mask) if m])] = row[len(ids):]
    return out
lm._model_generate = recording
gen = {"until": spec["until"], "max_gen_toks": spec["max_new_tokens"], "do_sample": False}
requests = [Instance(request_type="generate_until", doc={}, arguments=(p, dict(gen)), idx=i)
            for i, p in enumerate(spec["prompts"])]
start, cpu = time.perf_counter(), time.process_time()
texts = lm.generate_until(requests, disable_tqdm=True)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
json.dump({"seconds": seconds, "cpu": cpu, "texts": texts, "tokens": tokens}, open(sys.argv[2], "w"))
"""


def generation_only(args, model, questions, env: dict[str, str]) -> None:
    """Measurement 1: the same prompts, generation time only; tokens and texts compared."""
    from megatron_telecom.evaluation.open_generation import (
        GenerationConfig,
        encode_prompt,
        greedy_generate,
    )

    python = ensure_venv()
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    prompts = [encode_prompt(model.tokenizer, q, chat=False) for q in questions]
    start, cpu = time.perf_counter(), time.process_time()
    ours = greedy_generate(model, prompts, config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"model": str(model.hf_path), "batch_size": args.batch_size,
                                    "prompts": [q.prompt for q in questions], "until": list(config.until),
                                    "max_new_tokens": config.max_new_tokens}))
        print(f"    ({_load()})", flush=True)
        subprocess.run([str(python), "-c", LMEVAL_SIDE, str(spec), str(Path(tmp) / "out.json")], check=True, env=env)
        theirs = json.loads((Path(tmp) / "out.json").read_text())
    same_tokens = sum(list(c.ids) == theirs["tokens"][json.dumps(p)][: len(c.ids)] for c, p in zip(ours, prompts))
    same_text = sum(c.text == t for c, t in zip(ours, theirs["texts"], strict=True))
    print(f"[1] generation only (model loading excluded), {len(questions)} questions, {_load()}:")
    print(f"    ours:    wall {seconds:6.1f} s, CPU {cpu:6.1f} s")
    print(f"    lm-eval: wall {theirs['seconds']:6.1f} s, CPU {theirs['cpu']:6.1f} s")
    print(f"    speed-up wall {theirs['seconds'] / seconds:.2f}x, CPU {theirs['cpu'] / cpu:.2f}x; "
          f"token-identical answers {same_tokens}/{len(ours)}, identical texts {same_text}/{len(ours)} "
          f"({sum(len(c.ids) for c in ours)} generated tokens)")


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, _children_cpu() - cpu


def whole_commands(args, model, questions, env: dict[str, str]) -> None:
    """Measurement 2: ``tools/evaluate.py open`` vs ``lm_eval --tasks teleqna_open``, whole processes."""
    from megatron_telecom.evaluation.open_questions import open_record

    env = {**env, "PYTHONPATH": str(REPO)}  # lm-eval's task imports our metrics (open_utils.py)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "teleqna_open.jsonl").write_text("".join(json.dumps(open_record(q)) + "\n" for q in questions))
        ours_cmd = [sys.executable, str(REPO / "tools" / "evaluate.py"), "open", "--model", str(model.hf_path),
                    "--dtype", "float32", "--data", str(tmp / "teleqna_open.jsonl"), "--batch-size",
                    str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
                    "--log-samples", str(tmp / "ours.jsonl"), "--output", str(tmp / "ours.json")]
        ours_seconds, ours_cpu = _timed(ours_cmd, env, tmp)
        theirs_cmd = [str(Path(ensure_venv()).parent / "lm_eval"), "--model", "hf", "--model_args",
                      f"pretrained={model.hf_path},dtype=float32", "--device", "cpu", "--batch_size",
                      str(args.batch_size), "--include_path", str(TASKS), "--tasks", "teleqna_open",
                      "--gen_kwargs", f"max_gen_toks={args.max_new_tokens}",
                      "--log_samples", "--output_path", str(tmp / "lmeval")]
        theirs_seconds, theirs_cpu = _timed(theirs_cmd, env, tmp)
        ours = {r["id"]: r["prediction"] for r in map(json.loads, (tmp / "ours.jsonl").read_text().splitlines())}
        overall = json.loads((tmp / "ours.json").read_text())["teleqna_open"]["greedy"]["overall"]
        theirs = {}
        for path in glob.glob(str(tmp / "lmeval" / "**" / "samples_teleqna_open_*.jsonl"), recursive=True):
            for sample in map(json.loads, Path(path).read_text().splitlines()):
                theirs[sample["doc"]["id"]] = sample["filtered_resps"][0]
        (results,) = glob.glob(str(tmp / "lmeval" / "**" / "results_*.json"), recursive=True)
        their_metrics = json.loads(Path(results).read_text())["results"]["teleqna_open"]
    assert sorted(theirs) == sorted(ours), "lm-eval answered other questions than ours"
    same = sum(ours[q] == theirs[q] for q in ours)
    scale = {"bleu": 100, "chrf": 100}  # lm-eval reports sacrebleu's 0-100
    diffs = {k: abs(overall[k] * scale.get(k, 1) - their_metrics[f"{k},none"]) for k in scale | dict.fromkeys(
        ("exact_match", "f1", "rouge1", "rouge2", "rougeL"))}
    print(f"[2] whole commands (model loading included), {len(ours)} questions, lm-eval task teleqna_open "
          f"(our YAML), {_load()}:")
    print(f"    ours:    wall {ours_seconds:6.1f} s, CPU {ours_cpu:6.1f} s  (tools/evaluate.py open ...)")
    print(f"    lm-eval: wall {theirs_seconds:6.1f} s, CPU {theirs_cpu:6.1f} s  "
          f"(lm_eval --model hf --tasks teleqna_open --include_path ...)")
    print(f"    speed-up wall {theirs_seconds / ours_seconds:.2f}x, CPU {theirs_cpu / ours_cpu:.2f}x (target >= 2x); "
          f"identical answers {same}/{len(ours)}")
    print("    metrics ours / lm-eval: " + ", ".join(
        f"{k} {overall[k] * scale.get(k, 1):.4f} / {their_metrics[f'{k},none']:.4f}" for k in diffs))
    print(f"    max |metric difference| {max(diffs.values()):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m")
    parser.add_argument("--data", default=None, help="TeleQnA zip or JSON (default: ../shared/data)")
    parser.add_argument("--limit", type=int, default=100, help="questions of the whole-command measurement")
    parser.add_argument("--parity-limit", type=int, default=50, help="questions of the generation-only measurement")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="of both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    parser.add_argument("--skip", choices=["generation-only", "whole-commands"], default=None)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from megatron_telecom.evaluation.benchmarks import read_benchmark
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.open_questions import teleqna_open
    from megatron_telecom.evaluation.questions import stratified_sample

    torch.set_num_threads(args.threads)
    questions = stratified_sample(teleqna_open(read_benchmark("teleqna", args.data)).questions, args.limit)
    model = load_model(args.model, "float32", torch.device("cpu"))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    print(f"model {args.model}, TeleQnA-open, {len(questions)} stratified questions, greedy, "
          f"max {args.max_new_tokens} new tokens, float32 CPU, {args.threads} thread(s) each, batch size "
          f"{args.batch_size} each, {os.cpu_count()} CPUs")
    if args.skip != "generation-only":
        generation_only(args, model, questions[: args.parity_limit], env)
    if args.skip != "whole-commands":
        whole_commands(args, model, questions, env)


if __name__ == "__main__":
    main()
