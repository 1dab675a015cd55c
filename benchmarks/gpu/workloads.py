"""The GPU kit's child processes: each workload runs alone, so a crash or OOM stays in its step.

    python benchmarks/gpu/workloads.py prepare-data FOLDER
    python benchmarks/gpu/workloads.py train [--deterministic] [--out J] [--stop-at-checkpoint SAVE]
                                             -- PRETRAIN_FLAGS...
    python benchmarks/gpu/workloads.py bare --out J [--max-micro-batch N] -- PRETRAIN_FLAGS...
    python benchmarks/gpu/workloads.py trainer --out J -- PRETRAIN_FLAGS...

``prepare-data`` writes every stage's synthetic data (``data_paths``). ``train`` is the
trainer's command line (``megatron_telecom.pretrain``) in this process, so that ``--out`` can
record its peak device memory and seconds. ``bare`` builds the run with the trainer's ``setup`` and, on synthetic tokens, probes the
largest micro-batch (powers of two) whose full step (forward, backward, optimizer) fits, then
times megatron-core's forward_backward + optimizer loop at it. ``trainer`` times our trainer
against that bare loop on the same model, optimizer and data (benchmarks/bench_trainer.py's
loops). Both write one JSON record: ms/iteration, tokens/s, model TFLOP/s (models/flops.py),
peak memory on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

GiB = 1024**3


CHECK_SEQ_LENGTH = 64  # the tiny preset's checks against the CPU (SFT sequences, DPO pairs)
SPEED_SEQ_LENGTH = 4096  # the ~1B speed runs
EXAM_QUESTIONS = 6


def data_paths(folder: Path) -> dict[str, Path]:
    """Where ``prepare-data`` writes each dataset (prefixes, and two JSONL files)."""
    return {"tokens": folder / "tokens", "sft": folder / "sft" / "packed",
            "sft_speed": folder / "sft_speed" / "packed", "dpo": folder / "dpo" / "pairs",
            "dpo_speed": folder / "dpo_speed" / "pairs", "exam": folder / "exam.jsonl",
            "held_out": folder / "held_out.jsonl"}


def prepare_data(folder: Path) -> None:
    """Every stage's data: a token dataset (NullTokenizer ids < 511) long enough for any seq
    length; packed SFT conversations and DPO pairs, as the tests write them, for the checks
    (tiny) and the speed runs (long); an exam and a held-out file for in-loop evaluation."""
    from _dist_helpers import write_token_dataset
    from _dpo_helpers import synthetic_pairs, write_dpo_dataset
    from _sft_helpers import synthetic_conversations, write_sft_dataset

    paths = data_paths(folder)
    write_token_dataset(paths["tokens"], num_docs=600, vocab_size=511, min_len=200, max_len=2000)
    write_sft_dataset(paths["sft"], synthetic_conversations(count=16),
                      seq_length=CHECK_SEQ_LENGTH)
    write_sft_dataset(paths["sft_speed"], synthetic_conversations(count=64, min_len=256,
                                                                  max_len=2048),
                      seq_length=SPEED_SEQ_LENGTH)
    write_dpo_dataset(paths["dpo"], synthetic_pairs(count=8))
    write_dpo_dataset(paths["dpo_speed"], synthetic_pairs(  # a pair holds at most 4,094 tokens
        count=32, prompt_lengths=(256, 1024), completion_lengths=(128, 1024)))
    write_evaluation_inputs(paths["exam"], paths["held_out"])


def write_evaluation_inputs(exam: Path, held_out: Path) -> None:
    """A generic-JSONL exam from the project's DPO sample (question, the chosen answer and the
    rejected one, order alternating) and a held-out file of two sample documents (cut short to
    keep the CPU reference cheap)."""
    data = REPO / "examples" / "data"
    pairs = [json.loads(line) for line in
             (data / "telecom_dpo_sample.jsonl").read_text(encoding="utf-8").splitlines()]
    questions = []
    for row in [r for r in pairs if isinstance(r.get("prompt"), list)][:EXAM_QUESTIONS]:
        choices = [row["chosen"][-1]["content"], row["rejected"][-1]["content"]]
        gold = len(questions) % 2
        questions.append({"question": row["prompt"][-1]["content"],
                          "choices": choices if gold == 0 else choices[::-1], "answer": gold,
                          "category": "telecom"})
    exam.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    documents = (data / "telecom_sample.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    held_out.write_text("".join(json.dumps({"text": json.loads(d)["text"][:600]}) + "\n"
                                for d in documents), encoding="utf-8")


def train(argv: list[str], *, deterministic: bool, out: Path | None,
          stop_at_checkpoint: Path | None = None) -> int:
    """``megatron_telecom.pretrain`` with ``argv``; ``out``: its exit code, seconds and peak
    device memory as JSON. ``deterministic``: torch's deterministic kernels, which bitwise
    resume needs on GPUs (with CUBLAS_WORKSPACE_CONFIG set by the caller).
    ``stop_at_checkpoint``: see ``_stop_at_first_checkpoint``."""
    import torch

    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if stop_at_checkpoint is not None:
        _stop_at_first_checkpoint(stop_at_checkpoint)
    from megatron_telecom.pretrain import main

    start = time.perf_counter()
    code = main(argv)
    if out is not None:
        from megatron_telecom.atomic import atomic_write_json

        atomic_write_json(out, {"exit_code": code, "seconds": time.perf_counter() - start,
                                "peak_memory_gib": _peak_memory_gib()})
    return code


def _stop_at_first_checkpoint(save: Path) -> None:
    """SIGSTOP this process as soon as ``save`` holds a checkpoint, for the kit to SIGKILL.

    A thread of the trainer's own process watches, so it runs whenever the trainer does: on a
    loaded machine a watcher in another process may not be scheduled before the run ends.
    """
    tracker = save / "latest_checkpointed_iteration.txt"

    def watch() -> None:
        while not tracker.exists():
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGSTOP)

    threading.Thread(target=watch, name="stop-at-checkpoint", daemon=True).start()


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
    parser.add_argument("folder", nargs="?", help="prepare-data: folder to write the data into")
    parser.add_argument("--out", type=Path, help="JSON record to write (train, bare, trainer)")
    parser.add_argument("--max-micro-batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (per block)")
    parser.add_argument("--blocks", type=int, default=2, help="trainer: alternating blocks")
    parser.add_argument("--deterministic", action="store_true", help="train: deterministic kernels")
    parser.add_argument("--stop-at-checkpoint", type=Path, metavar="SAVE",
                        help="train: SIGSTOP itself once SAVE holds a checkpoint")
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.workload == "prepare-data":
        prepare_data(Path(args.folder))
        return 0
    if args.workload == "train":
        return train(flags, deterministic=args.deterministic, out=args.out,
                     stop_at_checkpoint=args.stop_at_checkpoint)
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
