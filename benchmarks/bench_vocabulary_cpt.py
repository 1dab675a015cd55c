#!/usr/bin/env python3
"""Vocabulary extension, measured: held-out bits per byte of base vs plain CPT vs extended + CPT.

From SmolLM2-135M converted as the quickstart converts it (``--base``), one extended tokenizer
(``--tokenizer``, e.g. tools/extend_tokenizer.py's N=1,024 folder) and the training split of a
telecom corpus (``--train``: JSONL, held-out documents already split off with
tools/split_heldout.py, the same rule the mining skipped):

1. ``resize-vocab`` the base checkpoint for the extended tokenizer (new rows: mean of the pieces);
2. preprocess ``--train`` with each tokenizer (the same documents);
3. CPT both ways with our trainer (torchrun, ``--nproc`` processes), the same flags and the same
   token budget (``--train-iters`` x ``--global-batch-size`` x ``--seq-length``): bytes of text
   seen = tokens seen x the training set's bytes per token under that tokenizer;
4. export each (mcore-to-hf) and run ``tools/evaluate.py perplexity`` on the held-out telecom and
   general JSONL: bits per byte (comparable across tokenizers), base, extended before training,
   plain CPT and extended CPT.

CPT throughput is bytes of text per second of training (the trainer's own per-iteration times,
the first ``--warmup`` iterations left out); CPU seconds of each run (user+sys of the process
tree) and the load average are printed beside wall times, since the machine may be shared.

    python benchmarks/bench_vocabulary_cpt.py --base runs/smollm2-mcore --tokenizer /work/vocab/smollm2_N1024 \\
        --train split/telecom/train_subset.jsonl --heldout heldout_telecom.jsonl --general heldout_general.jsonl \\
        --workdir runs/vocab_cpt --train-iters 40
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ITERATION = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?elapsed time per iteration \(ms\): ([\d.]+)")


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` (output to ``log``); (wall seconds, CPU seconds of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with open(log, "w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  {wall:.0f}s wall, {cpu:.0f} CPU-s, load {os.getloadavg()[0]:.1f}: {' '.join(cmd[:4])}...",
          flush=True)
    return wall, cpu


def tool(name: str, *args: object) -> list[str]:
    return [sys.executable, str(REPO / "tools" / name), *map(str, args)]


def preprocess(train: Path, tokenizer: Path, prefix: Path, log: Path) -> dict:
    """Tokenise ``train``; its documents, tokens and UTF-8 bytes."""
    if not Path(f"{prefix}_text_document.idx").is_file():
        run(tool("preprocess_data.py", "--input", train, "--output-prefix", prefix, "--tokenizer-type",
                 "HuggingFaceTokenizer", "--tokenizer-model", tokenizer, "--append-eod",
                 "--workers", 1), log)
    sidecar = json.loads(Path(f"{prefix}_text_document.json").read_text())
    num_bytes = sum(len(json.loads(line)["text"].encode()) for line in train.open(encoding="utf-8"))
    tokens = sidecar["dataset"]["tokens"]
    return {"prefix": f"{prefix}_text_document", "tokens": tokens, "bytes": num_bytes}


def cpt(a: argparse.Namespace, load: Path, tokenizer: Path, data: str, save: Path, log: Path) -> dict:
    """One CPT run; its wall/CPU seconds and the trainer's per-iteration times."""
    if not (save / "latest_checkpointed_iteration.txt").is_file():
        flags = ["--load", load, "--finetune", "--tokenizer-type", "HuggingFaceTokenizer",
                 "--tokenizer-model", tokenizer, "--data-path", data, "--split", "100,0,0",
                 "--data-cache-path", save.parent / "data_cache", "--seq-length", a.seq_length,
                 "--micro-batch-size", a.micro_batch_size, "--global-batch-size", a.global_batch_size,
                 "--train-iters", a.train_iters, "--lr", a.lr, "--min-lr", a.lr / 10,
                 "--lr-warmup-iters", max(1, a.train_iters // 10), "--lr-decay-style", "cosine",
                 "--weight-decay", 0.1, "--adam-beta2", 0.95, "--clip-grad", 1.0,
                 "--eval-interval", 0, "--log-interval", 1, "--seed", 1234, "--save", save,
                 "--save-interval", 100000, "--log-metrics-file", save.parent / f"{save.name}.metrics.jsonl"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(a.nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
               "-m", "megatron_telecom.pretrain", *map(str, flags)]
        wall, cpu = run(cmd, log)
    else:
        wall = cpu = float("nan")
    times = {int(i): float(ms) / 1000 for i, ms in ITERATION.findall(log.read_text())}
    timed = [t for i, t in sorted(times.items()) if i > a.warmup]
    losses = [json.loads(line) for line in (save.parent / f"{save.name}.metrics.jsonl").open()]
    losses = [r["lm_loss"] for r in losses if "lm_loss" in r]
    return {"wall_s": wall, "cpu_s": cpu, "train_s": sum(timed), "timed_iterations": len(timed),
            "first_loss": losses[0], "last_loss": losses[-1]}


def evaluate(a: argparse.Namespace, model: str | Path, out: Path, log: Path) -> dict:
    """bits per byte (and perplexity) of ``model`` on the held-out telecom and general sets."""
    if not out.is_file():
        run(tool("evaluate.py", "perplexity", "--model", model, "--input", a.heldout, a.general,
                 "--seq-length", a.eval_seq_length, "--output", out), log)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="converted SmolLM2 megatron checkpoint")
    p.add_argument("--tokenizer", type=Path, required=True, help="extended tokenizer folder")
    p.add_argument("--train", type=Path, required=True, help="training JSONL (held-out documents removed)")
    p.add_argument("--heldout", type=Path, required=True, help="held-out telecom JSONL")
    p.add_argument("--general", type=Path, required=True, help="held-out general JSONL (forgetting)")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--train-iters", type=int, default=40)
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--global-batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="iterations left out of the throughput")
    p.add_argument("--eval-seq-length", type=int, default=512)
    p.add_argument("--sides", default="base,resized,plain,extended", help="what to run and evaluate")
    p.add_argument("--no-eval", action="store_true", help="CPT throughput only (no export, no evaluation)")
    a = p.parse_args()
    w = a.workdir
    (w / "logs").mkdir(parents=True, exist_ok=True)
    sides = a.sides.split(",")
    old_tokenizer = a.base / "tokenizer"
    tag = f"extended-{a.tokenizer.name}"  # the plain side is shared by several extensions
    resized = w / f"{tag}-mcore"
    if "extended" in sides and not (resized / "latest_checkpointed_iteration.txt").is_file():
        print("resize-vocab", flush=True)
        run(tool("convert_checkpoint.py", "resize-vocab", "--load", a.base, "--save", resized,
                 "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", a.tokenizer),
            w / "logs" / "resize.log")
    report: dict = {"config": {k: str(v) for k, v in vars(a).items()}, "runs": {}, "eval": {}}
    data = {"plain": preprocess(a.train, old_tokenizer, w / "data" / "plain", w / "logs" / "pre_plain.log"),
            "extended": preprocess(a.train, a.tokenizer, w / "data" / tag, w / "logs" / f"pre_{tag}.log")}
    budget = a.train_iters * a.global_batch_size * a.seq_length
    for side, load, tokenizer in (("plain", a.base, old_tokenizer), ("extended", resized, a.tokenizer)):
        if side not in sides:
            continue
        print(f"CPT {side}: {a.train_iters} iterations x {a.global_batch_size} x {a.seq_length} tokens", flush=True)
        name = "plain" if side == "plain" else tag
        record = cpt(a, load, tokenizer, data[side]["prefix"], w / f"{name}-cpt", w / "logs" / f"cpt_{name}.log")
        bytes_per_token = data[side]["bytes"] / data[side]["tokens"]
        timed_tokens = record["timed_iterations"] * a.global_batch_size * a.seq_length
        record.update(tokens_seen=budget, bytes_per_token=bytes_per_token,
                      bytes_seen=budget * bytes_per_token,
                      tokens_per_s=timed_tokens / record["train_s"],
                      bytes_per_s=timed_tokens * bytes_per_token / record["train_s"])
        report["runs"][side] = record
        print(f"  {json.dumps(record)}", flush=True)
    models = {"base": ("base", "bundled:smollm2-135m"), "resized": (f"{tag}-step0", resized),
              "plain": ("plain-cpt", w / "plain-cpt"), "extended": (f"{tag}-cpt", w / f"{tag}-cpt")}
    for side in [] if a.no_eval else sides:
        name, model = models[side]
        print(f"evaluate {name}", flush=True)
        (w / "eval").mkdir(exist_ok=True)
        report["eval"][name] = evaluate(a, model, w / "eval" / f"{name}.json", w / "logs" / f"eval_{name}.log")
    (w / f"report-{tag}-{a.sides.replace(',', '+')}.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
