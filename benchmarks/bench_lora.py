#!/usr/bin/env python3
"""LoRA vs full-parameter SFT on SmolLM2-135M (fp32, CPU): memory, optimizer state, speed.

Both sides run our trainer (``--stage sft``, one process, 2 threads, micro batch 1, global batch 2
packed sequences of ``--seq-length`` tokens, AdamW) from the same converted SmolLM2, each in a
process of its own; the sides take turns ``--repeat`` times. Reported per side:
- **peak RSS**: the largest resident set of the training process (``getrusage`` of the waited-for
  children of a wrapper process that runs only that side);
- **trainable parameters**: the trainer's own count (``N trainable`` in its first line);
- **optimizer-state bytes**: the ``optimizer.*`` tensors of the checkpoint the run saves at its end
  (Adam's two moments; what the optimizer holds);
- **tokens/s**: the trainer's own figure per iteration, median over the iterations after ``--warmup``.

    python benchmarks/bench_lora.py                     # rank 16 on every linear, seq 512, 4 + 1 steps
    python benchmarks/bench_lora.py --rank 16 --steps 6 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sft_train import MODEL, REPO, prepare  # noqa: E402

TOKENS = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?tokens per second: ([\d.]+)")
TRAINABLE = re.compile(r"> \S+: ([\d,]+) parameters on rank 0(?: \(([\d,]+) trainable\))?")
WRAPPER = ("import resource, subprocess, sys\n"
           "code = subprocess.call(sys.argv[1:])\n"
           "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
           "sys.exit(code)\n")


def side_flags(workdir: Path, name: str, args: argparse.Namespace) -> list[str]:
    """Our trainer's flags for one side ("lora" or "full")."""
    flags = ["--stage", "sft", "--sft-data-path", str(workdir / "sft"), "--load", str(workdir / "mcore"),
             "--finetune", "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", MODEL,
             "--seq-length", str(args.seq_length), "--micro-batch-size", "1", "--global-batch-size", "2",
             "--train-iters", str(args.steps), "--lr", "1e-4", "--lr-decay-style", "constant",
             "--weight-decay", "0", "--eval-interval", "0", "--log-interval", "1",
             "--save", str(workdir / f"ckpt-{name}-{time.monotonic_ns()}"), "--no-save-rng"]
    if name == "lora":
        flags += ["--lora-rank", str(args.rank), "--lora-alpha", str(2 * args.rank)]
    return flags


def optimizer_bytes(save: Path) -> int:
    """Bytes of the optimizer-state tensors of the checkpoint in ``save`` (fp32 Adam moments)."""
    from torch.distributed.checkpoint import FileSystemReader

    folder = next(save.glob("iter_*"))
    metadata = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    total = 0
    for key, item in metadata.items():
        if key.startswith("optimizer.") and hasattr(item, "size"):
            total += item.properties.dtype.itemsize * int(__import__("math").prod(item.size))
    return total


def run_side(workdir: Path, name: str, args: argparse.Namespace) -> dict:
    """One training process; its figures."""
    flags = side_flags(workdir, name, args)
    save = Path(flags[flags.index("--save") + 1])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "megatron_telecom.pretrain", *flags]
    start = os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    spent = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rates = [float(rate) for step, rate in TOKENS.findall(proc.stdout) if int(step) > args.warmup]
    total, trainable = TRAINABLE.search(proc.stdout).groups()
    return {"peak_rss_mib": int(re.search(r"PEAK_RSS_KIB (\d+)", proc.stdout).group(1)) / 1024,
            "trainable": int((trainable or total).replace(",", "")), "parameters": int(total.replace(",", "")),
            "optimizer_bytes": optimizer_bytes(save), "tokens_per_s": statistics.median(rates),
            "cpu_s": (spent.children_user + spent.children_system) - (start.children_user + start.children_system)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_lora_") as tmp:
        workdir = Path(tmp)
        prepare(workdir, args.seq_length)
        results: dict[str, list[dict]] = {"full": [], "lora": []}
        for _ in range(args.repeat):
            for name in results:
                results[name].append(run_side(workdir, name, args))
                print(name, results[name][-1], flush=True)
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    full, lora = median["full"], median["lora"]
    print(f"\nSmolLM2-135M fp32, seq {args.seq_length}, global batch 2, {args.steps} steps ({args.warmup} warm-up), "
          f"median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print("| side | trainable parameters | optimizer state | peak RSS | tokens/s | CPU s |")
    print("|---|---|---|---|---|---|")
    for name, row in (("full SFT", full), (f"LoRA r={args.rank}", lora)):
        print(f"| {name} | {row['trainable']:,.0f} | {row['optimizer_bytes'] / 2**20:,.1f} MiB | "
              f"{row['peak_rss_mib']:,.0f} MiB | {row['tokens_per_s']:,.0f} | {row['cpu_s']:.0f} |")
    print(f"optimizer state ratio full / LoRA: {full['optimizer_bytes'] / lora['optimizer_bytes']:.1f}x; "
          f"tokens/s LoRA / full: {lora['tokens_per_s'] / full['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
