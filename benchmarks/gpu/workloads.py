"""The GPU kit's child processes: each workload runs alone, so a crash or OOM stays in its step.

    python benchmarks/gpu/workloads.py prepare-data PREFIX
    python benchmarks/gpu/workloads.py train [--deterministic] -- PRETRAIN_FLAGS...
    python benchmarks/gpu/workloads.py bare --out J [--max-micro-batch N] -- PRETRAIN_FLAGS...
    python benchmarks/gpu/workloads.py trainer --out J -- PRETRAIN_FLAGS...

``bare`` builds the run with the trainer's ``setup`` and, on synthetic tokens, probes the
largest micro-batch (powers of two) whose full step (forward, backward, optimizer) fits, then
times megatron-core's forward_backward + optimizer loop at it. ``trainer`` times our trainer
against that bare loop on the same model, optimizer and data (benchmarks/bench_trainer.py's
loops). Both write one JSON record: ms/iteration, tokens/s, model TFLOP/s (models/flops.py),
peak memory on CUDA.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

GiB = 1024**3


def prepare_data(prefix: Path) -> None:
    """A synthetic token dataset (NullTokenizer ids < 511) long enough for any seq length."""
    from _dist_helpers import write_token_dataset

    write_token_dataset(prefix, num_docs=600, vocab_size=511, min_len=200, max_len=2000)


def train(argv: list[str], *, deterministic: bool) -> int:
    """``megatron_telecom.pretrain``; ``deterministic``: torch's deterministic kernels, which
    bitwise resume needs on GPUs (with CUBLAS_WORKSPACE_CONFIG set by the caller)."""
    import torch

    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    from megatron_telecom.pretrain import main

    return main(argv)


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _synthetic_batches(run, micro_batch_size: int, count: int) -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(1234)
    s, vocab = run.seq_length, 511
    batches = []
    for _ in range(count):
        tokens = torch.randint(0, vocab, (micro_batch_size, s + 1), generator=generator)
        batches.append({"tokens": tokens[:, :-1], "labels": tokens[:, 1:],
                        "loss_mask": torch.ones(micro_batch_size, s),
                        "position_ids": torch.arange(s).expand(micro_batch_size, s)})
    return batches


def _bare_step(run, batches: list[dict], micro_batch_size: int) -> None:
    """One megatron-core step on given batches: zero grads, forward_backward, optimizer."""
    from megatron_telecom.training.stages.pretrain import forward_step

    for chunk in run.model:
        chunk.zero_grad_buffer()
    run.optimizer.zero_grad()
    run.forward_backward(forward_step_func=forward_step, data_iterator=iter(batches),
                         model=run.model, num_microbatches=len(batches),
                         seq_length=run.seq_length, micro_batch_size=micro_batch_size,
                         forward_only=False)
    run.optimizer.step()


def _is_oom(err: BaseException) -> bool:
    return "out of memory" in str(err).lower()


def _largest_micro_batch(run, max_micro_batch: int) -> tuple[int, list[int]]:
    """Largest power-of-two micro-batch <= max whose full step fits; (0, tried) if none."""
    import torch

    fits, tried, size = 0, [], 1
    while size <= max_micro_batch:
        tried.append(size)
        try:
            _bare_step(run, _synthetic_batches(run, size, 1), size)
            _synchronize()
        except (RuntimeError, MemoryError) as err:
            if not _is_oom(err):
                raise
            break
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        fits, size = size, size * 2
    return fits, tried


def _figures(run, config, micro_batch_size: int, seconds_per_iteration: float) -> dict:
    from megatron_telecom.models.flops import num_floating_point_operations

    flops = num_floating_point_operations(config, batch_size=micro_batch_size,
                                          seq_length=run.seq_length,
                                          padded_vocab_size=run.padded_vocab_size)
    return {"micro_batch_size": micro_batch_size, "seq_length": run.seq_length,
            "ms_per_iteration": 1000 * seconds_per_iteration,
            "tokens_per_s": micro_batch_size * run.seq_length / seconds_per_iteration,
            "tflops_per_device": flops / seconds_per_iteration / 1e12}


def _setup(argv: list[str]):
    """The trainer's run for these flags, and the model's TransformerConfig."""
    from megatron_telecom.training.arguments import parse_config
    from megatron_telecom.training.trainer import setup

    run = setup(parse_config(argv))
    config = run.model[0].config
    parameters = sum(p.numel() for chunk in run.model for p in chunk.parameters())
    return run, config, parameters


def _peak_memory_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / GiB if torch.cuda.is_available() else None


def bare(argv: list[str], *, max_micro_batch: int, iters: int) -> dict:
    """Largest fitting micro-batch, then the bare loop's speed and peak memory at it."""
    import torch

    run, config, parameters = _setup(argv)
    model = run.model[0]
    while hasattr(model, "module"):  # DDP, Float16Module -> GPTModel
        model = model.module
    core = type(model.decoder.layers[0].self_attention.core_attention)
    micro_batch, tried = _largest_micro_batch(run, max_micro_batch)
    record = {"parameters": parameters, "core_attention": core.__name__,
              "micro_batches_tried": tried}
    if not micro_batch:
        return {**record, "error": f"out of memory at micro-batch {tried[0]}"}
    batches = _synthetic_batches(run, micro_batch, 1)
    _bare_step(run, batches, micro_batch)  # warm-up at the chosen size
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        _bare_step(run, batches, micro_batch)
    _synchronize()
    seconds = (time.perf_counter() - start) / iters
    return {**record, **_figures(run, config, micro_batch, seconds),
            "peak_memory_gib": _peak_memory_gib()}


def trainer(argv: list[str], *, iters: int, blocks: int) -> dict:
    """Our trainer vs the bare loop on the same run, alternating timed blocks (medians)."""
    from bench_trainer import _bare_iterations, _trainer_iterations

    run, config, parameters = _setup(argv)
    _trainer_iterations(run, 1)  # warm-up
    _bare_iterations(run, 1)
    timings: dict[str, list[float]] = {"trainer": [], "bare": []}
    for block in range(blocks):
        order = ("bare", "trainer") if block % 2 else ("trainer", "bare")
        for name in order:
            loop = _trainer_iterations if name == "trainer" else _bare_iterations
            _synchronize()
            timings[name].append(loop(run, iters) / iters)
            _synchronize()
    mbs = run.layout.global_batch_size
    trainer_s, bare_s = (statistics.median(timings[k]) for k in ("trainer", "bare"))
    return {"parameters": parameters, "trainer": _figures(run, config, mbs, trainer_s),
            "bare": _figures(run, config, mbs, bare_s),
            "overhead_pct": 100 * (trainer_s - bare_s) / bare_s,
            "peak_memory_gib": _peak_memory_gib()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=("prepare-data", "train", "bare", "trainer"))
    parser.add_argument("prefix", nargs="?", help="prepare-data: dataset prefix to write")
    parser.add_argument("--out", type=Path, help="JSON record to write (bare, trainer)")
    parser.add_argument("--max-micro-batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (per block)")
    parser.add_argument("--blocks", type=int, default=2, help="trainer: alternating blocks")
    parser.add_argument("--deterministic", action="store_true", help="train: deterministic kernels")
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.workload == "prepare-data":
        prepare_data(Path(args.prefix))
        return 0
    if args.workload == "train":
        return train(flags, deterministic=args.deterministic)
    from megatron_telecom.atomic import atomic_write_json
    from megatron_telecom.runtime.distributed import destroy_distributed

    if args.workload == "bare":
        record = bare(flags, max_micro_batch=args.max_micro_batch, iters=args.iters)
    else:
        record = trainer(flags, iters=args.iters, blocks=args.blocks)
    destroy_distributed()
    atomic_write_json(args.out, record)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
