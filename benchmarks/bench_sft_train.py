#!/usr/bin/env python3
"""SFT training tokens/s: our trainer (``--stage sft``) vs TRL ``SFTTrainer``, side by side.

Same model (SmolLM2-135M, fp32), same conversations (the chat rows of
examples/data/telecom_sft_sample.jsonl, assistant-only loss), same hyper-parameters (AdamW,
lr 2e-5 constant, no weight decay, clipping at 1.0), same 2 cores, in one run. Each side is one
subprocess; the sides take turns, ``--repeat`` times (the machine is shared: compare within a run).

- ours, DP=2: ``torchrun --nproc_per_node 2``, 1 thread each, micro batch 1, global batch 2 packed
  sequences of ``--seq-length`` tokens (block-diagonal attention);
- ours, 1 process: 2 threads, micro batch 2, the same global batch;
- TRL packed: ``packing=True`` (BFD, padding-free) into ``--seq-length``, 2 sequences per step,
  2 threads;
- TRL padded: one conversation per row, padded to the longest of its batch, as many conversations
  per step as our global batch holds on average, 2 threads.

TRL runs with ``gradient_checkpointing=False`` and ``bf16=False`` (SFTConfig turns both on by
default) and the generation-tagged SmolLM2 template that ``assistant_only_loss`` needs. Throughput
is counted the same way for both: **real tokens/s** = non-padding tokens of the steps / their wall
time, and **trained tokens/s** = assistant (loss) tokens / the same time. Step time is the wall
time between step ends (data, forward, backward, optimizer, logging), the first ``--warmup`` steps
left out. Prints one table with the median over repetitions and the load average.

    python benchmarks/bench_sft_train.py                       # seq 512, 1 + 2 steps per side, 2 repetitions
    python benchmarks/bench_sft_train.py --repeat 3 --steps 4 --sides ours-dp2 trl-packed
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

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "telecom_sft_sample.jsonl"
TAGGED_SMOLLM2 = REPO / "tests" / "fixtures" / "smollm2_generation_tagged.jinja"
MODEL = "bundled:smollm2-135m"
LR, SEED, GLOBAL_BATCH = 2e-5, 1234, 2
SIDES = ("ours-dp2", "ours-1proc", "trl-packed", "trl-padded")
ITERATION = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?elapsed time per iteration \(ms\): ([\d.]+)")


def chat_rows() -> list[dict]:
    """The multi-turn (``messages``) rows of the sample: the ones both sides mask the same way."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if "messages" in r]


def prepare(workdir: Path, seq_length: int, hf_model: str = MODEL) -> dict:
    """Chat rows, our packed dataset of them (SmolLM2's tokenizer), ``hf_model`` (SmolLM2 unless
    told) in megatron-core format."""
    from megatron_telecom.bundled import resolve_hf_path
    from megatron_telecom.data.packed_sft import PackedSFTDataset
    from megatron_telecom.data.sft import SFTPreprocessConfig, preprocess_sft
    from megatron_telecom.data.tokenizers import TokenizerConfig

    rows = chat_rows()
    source = workdir / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    hf = resolve_hf_path(MODEL)
    tokenizer = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(hf))
    preprocess_sft(SFTPreprocessConfig(input=[str(source)], output_prefix=str(workdir / "sft"),
                                       seq_length=seq_length, tokenizer=tokenizer))
    subprocess.run([sys.executable, str(REPO / "tools" / "convert_checkpoint.py"), "hf-to-mcore",
                    "--hf-path", hf_model, "--save", str(workdir / "mcore")],
                   check=True, capture_output=True, env=_env(1), timeout=900)
    sequences = len(PackedSFTDataset(str(workdir / "sft")))
    return {"rows": len(rows), "sequences": sequences, "hf": str(hf),
            # TRL padded: our global batch's conversations, on average
            "conversations_per_step": max(1, round(len(rows) / sequences * GLOBAL_BATCH))}


def _env(threads: int) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _ours_tokens(prefix: str, seq_length: int, iterations: range) -> list[tuple[int, int]]:
    """(real, trained) tokens of each iteration's global batch, from the run's own sample order."""
    from megatron_telecom.training.stages.sft import SFTDataset

    data = SFTDataset(prefix, seq_length=seq_length, num_samples=GLOBAL_BATCH * (iterations.stop + 1),
                      seed=SEED, pad_token_id=0)
    counts = []
    for it in iterations:  # iteration it (1-based) reads samples (it-1)*GB .. it*GB-1
        real = trained = 0
        for i in range((it - 1) * GLOBAL_BATCH, it * GLOBAL_BATCH):
            sequence = data.packed[data.sequence_index(i)]
            real += int(sequence.document_lengths.sum())
            trained += int(sequence.loss_mask.sum())
        counts.append((real, trained))
    return counts


def run_ours(side: str, workdir: Path, info: dict, *, seq_length: int, warmup: int, steps: int) -> dict:
    """Our trainer under torchrun; step times from its per-iteration log lines."""
    nproc, threads, mbs = (2, 1, 1) if side == "ours-dp2" else (1, 2, GLOBAL_BATCH)
    flags = {"stage": "sft", "sft-data-path": workdir / "sft", "load": workdir / "mcore", "finetune": None,
             "tokenizer-type": "HuggingFaceTokenizer", "tokenizer-model": info["hf"],
             "seq-length": seq_length, "micro-batch-size": mbs, "global-batch-size": GLOBAL_BATCH,
             "train-iters": warmup + steps, "lr": LR, "lr-decay-style": "constant", "weight-decay": 0.0,
             "clip-grad": 1.0, "eval-interval": 0, "log-interval": 1, "seed": SEED}
    argv = [part for key, value in flags.items()
            for part in ([f"--{key}"] + ([] if value is None else [str(value)]))]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                           "--master_addr", "127.0.0.1", "--master_port", str(29600 + os.getpid() % 300),
                           "-m", "megatron_telecom.pretrain", *argv],
                          capture_output=True, text=True, env=_env(threads), cwd=REPO, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"{side} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    times = {int(it): float(ms) / 1000 for it, ms in ITERATION.findall(proc.stdout)}
    timed = range(warmup + 1, warmup + steps + 1)
    counts = _ours_tokens(str(workdir / "sft"), seq_length, timed)
    return _result([times[it] for it in timed], counts)


def run_trl(side: str, workdir: Path, info: dict, *, seq_length: int, warmup: int, steps: int) -> dict:
    """TRL SFTTrainer in a subprocess with 2 threads (``--trl-side``)."""
    proc = subprocess.run([sys.executable, __file__, "--trl-side", side, "--workdir", str(workdir),
                           "--seq-length", str(seq_length), "--warmup", str(warmup), "--steps", str(steps),
                           "--conversations-per-step", str(info["conversations_per_step"])],
                          capture_output=True, text=True, env=_env(2), cwd=REPO, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{side} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def trl_side(side: str, workdir: Path, *, seq_length: int, warmup: int, steps: int,
             conversations_per_step: int) -> dict:
    """Train TRL SFTTrainer for warmup + steps steps; time and count the tokens of each step."""
    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from megatron_telecom.bundled import resolve_hf_path

    disable_progress_bars()
    hf = str(resolve_hf_path(MODEL))
    counts: list[tuple[int, int]] = []
    ends: list[float] = []

    class Counting(SFTTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            labels = inputs["labels"]
            real = int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else labels.numel()
            counts.append((real, int((labels[:, 1:] != -100).sum())))
            return super().compute_loss(model, inputs, *args, **kwargs)

    class StepEnds(TrainerCallback):
        def on_step_end(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            ends.append(time.perf_counter())

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(hf)
    tokenizer.chat_template = TAGGED_SMOLLM2.read_text(encoding="utf-8")
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    packed = side == "trl-packed"
    args = SFTConfig(output_dir=str(workdir / side), report_to="none", use_cpu=True, disable_tqdm=True,
                     assistant_only_loss=True, packing=packed, max_length=seq_length,
                     per_device_train_batch_size=GLOBAL_BATCH if packed else conversations_per_step,
                     max_steps=warmup + steps, learning_rate=LR, lr_scheduler_type="constant",
                     warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
                     save_strategy="no", logging_steps=1, seed=SEED, bf16=False, fp16=False,
                     gradient_checkpointing=False)
    trainer = Counting(model=model, args=args, train_dataset=Dataset.from_list(chat_rows()),
                       processing_class=tokenizer, callbacks=[StepEnds()])
    ends.append(time.perf_counter())  # step 1 starts about here (the dataloader is built lazily)
    trainer.train()
    durations = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return _result(durations[warmup:warmup + steps], counts[warmup:warmup + steps])


def _result(durations: list[float], counts: list[tuple[int, int]]) -> dict:
    seconds = sum(durations)
    return {"seconds": seconds, "steps": len(durations),
            "real_tokens": sum(c[0] for c in counts), "trained_tokens": sum(c[1] for c in counts),
            "real_per_s": sum(c[0] for c in counts) / seconds,
            "trained_per_s": sum(c[1] for c in counts) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-length", type=int, default=512, help="packed sequence length (both sides)")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the timing")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per side and repetition")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions (sides take turns)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--trl-side", choices=SIDES[2:], help=argparse.SUPPRESS)  # internal
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--conversations-per-step", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    timing = dict(seq_length=args.seq_length, warmup=args.warmup, steps=args.steps)
    if args.trl_side:
        result = trl_side(args.trl_side, Path(args.workdir), conversations_per_step=args.conversations_per_step,
                          **timing)
        print("RESULT " + json.dumps(result))
        return

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        info = prepare(workdir, args.seq_length)
        print(f"SmolLM2-135M fp32, {info['rows']} conversations packed into {info['sequences']} sequences "
              f"of {args.seq_length}; global batch {GLOBAL_BATCH} sequences (TRL padded: "
              f"{info['conversations_per_step']} conversations); {args.warmup} warm-up + {args.steps} timed "
              f"steps, {args.repeat} repetition(s); {os.cpu_count()} CPUs", flush=True)
        results: dict[str, list[dict]] = {side: [] for side in args.sides}
        loads = [os.getloadavg()[0]]
        for rep in range(args.repeat):
            order = args.sides if rep % 2 == 0 else list(reversed(args.sides))  # load drifts
            for side in order:
                run = run_ours if side.startswith("ours") else run_trl
                r = run(side, workdir, info, **timing)
                results[side].append(r)
                loads.append(os.getloadavg()[0])
                print(f"  rep {rep + 1} {side:11s} {r['real_per_s']:8.0f} real tok/s "
                      f"{r['trained_per_s']:8.0f} trained tok/s ({r['steps']} steps, {r['seconds']:.1f} s, "
                      f"load {loads[-1]:.2f})", flush=True)
    medians = {side: {key: statistics.median(r[key] for r in rs) for key in ("real_per_s", "trained_per_s")}
               for side, rs in results.items()}
    trl_best = max((m["real_per_s"] for side, m in medians.items() if side.startswith("trl")), default=None)
    print(f"\nload average (1 min) during the run: min {min(loads):.2f}, max {max(loads):.2f}")
    print(f"{'side':12s} {'real tok/s':>11s} {'trained tok/s':>14s} {'vs best TRL':>12s}")
    for side, m in medians.items():
        ratio = f"{m['real_per_s'] / trl_best:11.2f}x" if trl_best else ""
        print(f"{side:12s} {m['real_per_s']:11.0f} {m['trained_per_s']:14.0f} {ratio:>12s}")


if __name__ == "__main__":
    main()
