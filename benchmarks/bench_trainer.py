"""Trainer overhead and CPU tokens/s: our loop vs a bare megatron-core loop on the same objects.

For each preset, one process builds the run with the trainer's own ``setup`` (synthetic tokens,
NullTokenizer sized like the preset's vocabulary), then alternates timed blocks of
  * trainer: ``train(run)`` — train_step + loss reduction + NaN check + log/metrics + exit check,
  * bare:    zero grads, megatron-core's forward_backward_func, optimizer.step, scheduler.step
on the same model, optimizer and data iterator, and prints median ms/iteration, the trainer's
overhead and tokens/s. Target: overhead <= 5%.

    python benchmarks/bench_trainer.py                      # tiny presets, seq 128, mbs 4
    python benchmarks/bench_trainer.py --presets tiny small --iters 10 --blocks 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _bare_iterations(run, n: int) -> float:
    """Seconds for n iterations of the minimal megatron-core loop."""
    from megatron_telecom.training.stages.pretrain import forward_step

    start = time.perf_counter()
    for _ in range(n):
        for chunk in run.model:
            chunk.zero_grad_buffer()
        run.optimizer.zero_grad()
        batches = [next(run.train_data) for _ in range(run.layout.num_microbatches)]
        run.forward_backward(
            forward_step_func=forward_step, data_iterator=iter(batches), model=run.model,
            num_microbatches=len(batches), seq_length=run.seq_length,
            micro_batch_size=run.layout.micro_batch_size, forward_only=False)
        run.optimizer.step()
        run.scheduler.step(increment=run.layout.global_batch_size)
    return time.perf_counter() - start


def _trainer_iterations(run, n: int) -> float:
    """Seconds for n iterations of the trainer's own loop."""
    from megatron_telecom.training.trainer import train

    run.cfg.training.train_iters = run.state.iteration + n
    start = time.perf_counter()
    train(run)
    return time.perf_counter() - start


def measure(preset: str, *, iters: int, blocks: int, seq_length: int, micro_batch_size: int,
            workdir: Path) -> dict:
    """One preset in this process: alternate trainer/bare blocks, return medians."""
    from _dist_helpers import tiny_train_args, write_token_dataset

    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.runtime.distributed import destroy_distributed
    from megatron_telecom.training.arguments import parse_config
    from megatron_telecom.training.trainer import setup

    vocab = get_preset(preset).vocab_size
    prefix = write_token_dataset(workdir / "tokens", num_docs=400, vocab_size=511,
                                 min_len=100, max_len=400)
    total = (2 * blocks + 1) * iters + 10
    cfg = parse_config(tiny_train_args(
        prefix, cache=workdir / "cache", train_iters=total, model=preset, num_layers=None,
        vocab_size=vocab - 1, seq_length=seq_length, micro_batch_size=micro_batch_size,
        global_batch_size=micro_batch_size, log_interval=10, split="100,0,0"))
    run = setup(cfg)
    _trainer_iterations(run, 3)  # warm up
    _bare_iterations(run, 3)
    trainer, bare = [], []
    for block in range(blocks):  # alternate which loop goes first (load drifts on shared CPUs)
        if block % 2:
            bare.append(_bare_iterations(run, iters) / iters)
        trainer.append(_trainer_iterations(run, iters) / iters)
        if not block % 2:
            bare.append(_bare_iterations(run, iters) / iters)
    destroy_distributed()
    t, b = statistics.median(trainer), statistics.median(bare)
    tokens = run.layout.global_batch_size * run.seq_length
    return {"preset": preset, "parameters": sum(p.numel() for c in run.model for p in c.parameters()),
            "trainer_ms": 1000 * t, "bare_ms": 1000 * b, "overhead_pct": 100 * (t - b) / b,
            "tokens_per_s": tokens / t, "bare_tokens_per_s": tokens / b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "tiny-mistral", "tiny-llama3"])
    parser.add_argument("--iters", type=int, default=10, help="iterations per timed block")
    parser.add_argument("--blocks", type=int, default=6, help="alternating blocks per loop")
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one preset, print JSON
    args = parser.parse_args()
    options = dict(iters=args.iters, blocks=args.blocks, seq_length=args.seq_length,
                   micro_batch_size=args.micro_batch_size)
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(measure(args.one, workdir=Path(tmp), **options)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONWARNINGS": "ignore", "MASTER_PORT": os.environ.get("MASTER_PORT", "29533")}
    print(f"CPU, 1 process, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, seq {args.seq_length}, "
          f"micro batch {args.micro_batch_size}, {args.blocks} x {args.iters} iterations per loop")
    print(f"{'preset':14s} {'params':>10s} {'trainer ms/it':>14s} {'bare ms/it':>11s} "
          f"{'overhead':>9s} {'tokens/s':>9s}")
    for preset in args.presets:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", preset, "--iters", str(args.iters),
             "--blocks", str(args.blocks), "--seq-length", str(args.seq_length),
             "--micro-batch-size", str(args.micro_batch_size)],
            capture_output=True, text=True, env=env, timeout=1800)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{preset}: failed\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(lines[-1][7:])
        print(f"{r['preset']:14s} {r['parameters']:10,d} {r['trainer_ms']:14.1f} "
              f"{r['bare_ms']:11.1f} {r['overhead_pct']:8.1f}% {r['tokens_per_s']:9.0f}")


if __name__ == "__main__":
    main()
