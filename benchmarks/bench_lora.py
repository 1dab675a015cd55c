#!/usr/bin/env python3
"""LoRA vs full-parameter SFT on SmolLM2-135M or a 1.1B Llama (fp32, CPU): memory, optimizer state, speed.

Both sides run our trainer (``--stage sft``, one process, 2 threads, micro batch 1, global batch 2
packed sequences of ``--seq-length`` tokens, AdamW) from the same converted SmolLM2, each in a
process of its own; the sides take turns ``--repeat`` times. Reported per side:
- **peak RSS**: the largest resident set of the training process (``getrusage`` of the waited-for
  children of a wrapper process that runs only that side);
- **trainable parameters**: the trainer's own count (``N trainable`` in its first line);
- **optimizer-state bytes**: the ``optimizer.*`` tensors of the checkpoint the run saves at its end
  (Adam's two moments; what the optimizer holds);
- **tokens/s**: the trainer's own figure per iteration, median over the iterations after ``--warmup``.

``--model 1b`` trains a random Llama of 1.17B parameters instead (bench_convert's ``1b`` shape:
16 layers, hidden 2048, FFN 8192, 32 heads, 8 query groups; SmolLM2's 49,152-token vocabulary so
the same data fits). Its full side saves no checkpoint (13 GB of disk and a save's memory for
nothing): its optimizer state is computed as Adam's two fp32 moments per trainable parameter,
the figure the 135M run measures from its checkpoint. A side is killed, and reported as not
fitting, when the machine's available memory falls under ``--min-available-gib`` (the machine is
shared: the benchmark must not push others into the OOM killer).

    python benchmarks/bench_lora.py                     # rank 16 on every linear, seq 512, 4 + 1 steps
    python benchmarks/bench_lora.py --rank 16 --steps 6 --repeat 2
    python benchmarks/bench_lora.py --model 1b --seq-length 128 --steps 3   # 1.1B, when ~20 GB are free
"""

from __future__ import annotations

import argparse
import json
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
             "--no-save-rng"]
    if name == "lora" or args.model != "1b":
        flags += ["--save", str(workdir / f"ckpt-{name}-{time.monotonic_ns()}")]
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


def available_gib() -> float:
    """The machine's available memory (``MemAvailable``), GiB."""
    meminfo = Path("/proc/meminfo").read_text()
    return int(re.search(r"MemAvailable:\s+(\d+) kB", meminfo).group(1)) / 2**20


def stop_tree(pid: int) -> float:
    """SIGKILL a process and all its descendants (torchrun starts its workers in sessions of their
    own); the tree's resident MiB just before."""
    import psutil

    root = psutil.Process(pid)
    tree, rss = [*root.children(recursive=True), root], 0
    for process in tree:
        try:
            rss += process.memory_info().rss
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return rss / 2**20


def run_side(workdir: Path, name: str, args: argparse.Namespace) -> dict | None:
    """One training process; its figures, or None when it was stopped for want of memory."""
    flags = side_flags(workdir, name, args)
    save = Path(flags[flags.index("--save") + 1]) if "--save" in flags else None
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "megatron_telecom.pretrain", *flags]
    start = os.times()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                                start_new_session=True)
        lowest, deadline = available_gib(), time.monotonic() + 3600
        while proc.poll() is None:
            lowest = min(lowest, available_gib())
            if lowest < args.min_available_gib or time.monotonic() > deadline:
                rss = stop_tree(proc.pid)
                proc.wait()
                print(f"{name}: stopped at {rss:,.0f} MiB resident, available memory {lowest:.1f} GiB < "
                      f"{args.min_available_gib} GiB (or past an hour)", flush=True)
                return None
            time.sleep(0.2)
        out.seek(0)
        stdout = out.read()
    spent = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{stdout[-6000:]}")
    rates = [float(rate) for step, rate in TOKENS.findall(stdout) if int(step) > args.warmup]
    total, trainable = TRAINABLE.search(stdout).groups()
    trainable = int((trainable or total).replace(",", ""))
    return {"peak_rss_mib": int(re.search(r"PEAK_RSS_KIB (\d+)", stdout).group(1)) / 1024,
            "trainable": trainable, "parameters": int(total.replace(",", "")),
            # no checkpoint (1b full side): Adam's exp_avg and exp_avg_sq, fp32, per trainable parameter
            "optimizer_bytes": optimizer_bytes(save) if save else 2 * 4 * trainable,
            "lowest_available_gib": lowest, "tokens_per_s": statistics.median(rates),
            "cpu_s": (spent.children_user + spent.children_system) - (start.children_user + start.children_system)}


def prepare_model(workdir: Path, args: argparse.Namespace) -> str:
    """The data (SmolLM2's tokenizer) and the base in megatron-core format; the model's name."""
    if args.model == "smollm2-135m":
        prepare(workdir, args.seq_length)
        return "SmolLM2-135M"
    from bench_convert import write_random_llama

    from megatron_telecom.bundled import resolve_hf_path

    vocab = json.loads((Path(resolve_hf_path(MODEL)) / "config.json").read_text())["vocab_size"]
    model_bytes = write_random_llama(workdir / "hf-1b", "1b", vocab_size=vocab)
    prepare(workdir, args.seq_length, hf_model=str(workdir / "hf-1b"))
    return f"random Llama {model_bytes / 4 / 1e9:.2f}B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2-135m", "1b"), default="smollm2-135m")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sides", nargs="+", choices=("full", "lora"), default=["full", "lora"])
    parser.add_argument("--workdir", help="keep the data and the converted base here, and reuse them")
    parser.add_argument("--min-available-gib", type=float, default=1.5,
                        help="stop a side when the machine's available memory falls under this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_lora_") as tmp:
        workdir = Path(args.workdir or tmp)
        if args.workdir and (workdir / "mcore").is_dir():
            model = (workdir / "model.txt").read_text()  # prepared by an earlier run
        else:
            model = prepare_model(workdir, args)
            (workdir / "model.txt").write_text(model)
        results: dict[str, list[dict]] = {name: [] for name in args.sides}
        for _ in range(args.repeat):
            for name in results:
                row = run_side(workdir, name, args)
                if row is not None:
                    results[name].append(row)
                print(name, row, flush=True)
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
              for name, runs in results.items() if runs}
    print(f"\n{model} fp32, seq {args.seq_length}, global batch 2, {args.steps} steps ({args.warmup} warm-up), "
          f"median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print("| side | trainable parameters | optimizer state | peak RSS | tokens/s | CPU s |")
    print("|---|---|---|---|---|---|")
    for name, label in (("full", "full SFT"), ("lora", f"LoRA r={args.rank}")):
        if name in median:
            row = median[name]
            computed = " (computed)" if args.model == "1b" and name == "full" else ""
            print(f"| {label} | {row['trainable']:,.0f} | {row['optimizer_bytes'] / 2**20:,.1f} MiB{computed} | "
                  f"{row['peak_rss_mib']:,.0f} MiB | {row['tokens_per_s']:,.0f} | {row['cpu_s']:.0f} |")
        elif name in results:
            print(f"| {label} | did not fit (available memory under {args.min_available_gib} GiB) | | | | |")
    if "full" in median and "lora" in median:
        full, lora = median["full"], median["lora"]
        print(f"optimizer state ratio full / LoRA: {full['optimizer_bytes'] / lora['optimizer_bytes']:.1f}x; "
              f"tokens/s LoRA / full: {lora['tokens_per_s'] / full['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
