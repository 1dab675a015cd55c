"""The GPU kit's stage steps: SFT (f), DPO (g) and in-loop evaluation (h).

Each step starts the trainer only through its command line (``workloads.py train``, i.e.
``megatron_telecom.pretrain``'s flags) and checks the device against the CPU: a few iterations of
the tiny preset in fp32 with the same seed, data and initial weights (``--use-cpu-initialization``)
on the device and on the CPU, compared by relative difference (``Kit.tolerance``, as step a).
THD through Transformer Engine is the exception: TE attends packed (THD) sequences with its
fused or flash kernels only, which take bf16/fp16 (its unfused attention refuses THD), so there
the device runs SFT and DPO in bf16 against the CPU's fp32, at ``PACKED_BF16_TOLERANCE``.
On a GPU, SFT and DPO then time a bf16 run of step b's ~1B model at seq 4096 (tokens/s, MFU, peak
memory); in CPU mode the check run's figures stand in for it, as a second tiny run would add
nothing but time. The data is workloads.prepare_data's: synthetic packed conversations and pairs
(the tests' writers), an exam and a held-out file for the evaluation.

- f. SFT packed: ``--stage sft`` on packed conversations; the trainer attends THD through
  Transformer Engine where it imports on a GPU, a block-diagonal mask on SDPA otherwise.
- g. DPO: the reference pass (``--compute-reference-logprobs``, its log-probs compared with the
  CPU's), then ``--stage dpo`` training (its first loss is ln 2: the policy is the reference).
- h. in-loop evaluation: ``--eval-benchmarks`` (a 6-question exam) and
  ``--eval-perplexity-inputs`` at the last iteration; per-option log-likelihoods and perplexity
  compared with the CPU's. It uses the checkout's small HF tokenizer (tests/fixtures), as the
  evaluation needs one and the GPU machine is offline.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from _dist_helpers import read_jsonl, tiny_train_args, train_losses
from _dpo_helpers import dpo_train_args
from _sft_helpers import sft_train_args
from kit_report import max_rel_diff, table_row, versus
from workloads import CHECK_SEQ_LENGTH, EXAM_QUESTIONS, SPEED_SEQ_LENGTH

REPO = Path(__file__).resolve().parents[2]
HF_TOKENIZER = REPO / "tests" / "fixtures" / "hf_tokenizer"
CHECK_ITERS = 3  # SFT and DPO checks
EVAL_ITERS = 2  # the evaluation scores at the last one
# micro-batch 1: THD packed sequences through Transformer Engine take one sequence per microbatch
CHECK_BATCH = dict(micro_batch_size=1, global_batch_size=4)
SPEED_ITERS, SPEED_LOG_INTERVAL, SPEED_GLOBAL_BATCH = 8, 4, 8  # the last log line: iters 5-8
# bf16 device vs fp32 CPU for THD. Measured with --bf16 on the CPU: the SFT and DPO checks' losses
# differ from fp32 by at most 2.2e-4 and 6.7e-4, the reference log-probs by 1.1e-4; GPU kernels
# sum in other orders, hence ~10x that.
PACKED_BF16_TOLERANCE = 1e-2


def _check_flags(kit: Any, name: str, data: Path, iters: int, **flags: object) -> list[str]:
    """The tiny preset's flags for a check run ``name``, its metrics in work/NAME.jsonl."""
    return tiny_train_args(data, cache=kit.work / f"{name}_cache", train_iters=iters,
                           use_cpu_initialization=True,  # the same initial weights on GPU and CPU
                           log_metrics_file=kit.work / f"{name}.jsonl", **flags)


def _speed_flags(kit: Any, stage_flags: dict[str, object]) -> list[str]:
    """Step b's model in bf16 at seq 4096 on a stage's data, micro-batch 1."""
    return kit.bench_flags(1, SPEED_ITERS, global_batch_size=SPEED_GLOBAL_BATCH,
                           log_interval=SPEED_LOG_INTERVAL, **stage_flags)


def _packed_check(kit: Any, force_cpu: bool) -> tuple[dict[str, object], float, str]:
    """(extra flags, tolerance, precision) of a packed check run: bf16 where the device attends
    THD through TE (its only kernels for THD take bf16), fp32 otherwise and on the CPU."""
    if kit.transformer_engine() and not force_cpu:
        return {"bf16": True}, PACKED_BF16_TOLERANCE, "bf16"
    return {}, kit.tolerance, "fp32"


def _failures(checks: list[tuple[str, float, float]]) -> None:
    """AssertionError naming every (what, relative difference, tolerance) that is over."""
    over = [f"{what} differ from the CPU by {rel:.2e} > {tol:g}" for what, rel, tol in checks
            if not rel <= tol]
    if over:
        raise AssertionError("; ".join(over))


# ---------------------------------------------------------------------------------- f. SFT
def sft(kit: Any) -> dict:
    """Packed SFT: fp32 losses on the device vs the CPU; on a GPU a bf16 speed run."""
    def check(tag: str, force_cpu: bool) -> dict:
        precision_flags, _, precision = _packed_check(kit, force_cpu)
        name = f"f_{tag}_{precision}"
        flags = sft_train_args(kit.data["sft"], seq_length=CHECK_SEQ_LENGTH, **CHECK_BATCH,
                               **precision_flags)
        record = kit.train(name, _check_flags(kit, name, kit.data["sft"], CHECK_ITERS, **flags),
                           force_cpu=force_cpu)
        return {**record, "losses": list(train_losses(kit.work / f"{name}.jsonl").values())}

    device, cpu = kit.device_and_cpu(check)
    rel = max_rel_diff(device["losses"], cpu["losses"])
    _, tolerance, precision = _packed_check(kit, force_cpu=False)
    backend = kit.backend(packed=True)
    rows = [table_row("SFT", f"{precision} vs CPU fp32 (f)", backend, device,
                      check=versus(rel, tolerance))]
    speed = None
    if not kit.cpu:
        speed = kit.train("f_speed_bf16", _speed_flags(kit, sft_train_args(
            kit.data["sft_speed"], seq_length=SPEED_SEQ_LENGTH)))
        rows.append(table_row("SFT", "bf16 ~1B speed (f)", backend, speed))
    result = {"backend": backend, "iterations": CHECK_ITERS, "precision": precision,
              "device": device, "cpu": cpu, "device_vs_cpu_max_rel_diff": rel,
              "tolerance": tolerance, "speed": speed, "rows": rows}
    _failures([("SFT losses", rel, tolerance)])
    return result


# ---------------------------------------------------------------------------------- g. DPO
def _dpo_runs(kit: Any, name: str, prefix: Path, flags: list[str], *, force_cpu: bool = False,
              seq_length: int) -> dict:
    """The reference pass, then DPO training, on the same flags; their records."""
    reference = kit.train(f"{name}_reference", [*flags, "--compute-reference-logprobs"],
                          force_cpu=force_cpu)
    fingerprint = json.loads(Path(f"{prefix}_reference_logps.json").read_text())
    seconds = fingerprint["computed"]["seconds"]  # the pass alone, without the setup
    reference.update(pass_seconds=seconds, tokens_per_s=fingerprint["pairs"] * seq_length / seconds)
    return {"reference": reference, "training": kit.train(name, flags, force_cpu=force_cpu)}


def dpo(kit: Any) -> dict:
    """DPO: reference log-probs and training losses on the device vs the CPU; a bf16 speed run."""
    def check(tag: str, force_cpu: bool) -> dict:
        precision_flags, _, precision = _packed_check(kit, force_cpu)
        name = f"g_{tag}_{precision}"
        folder = kit.work / name  # its own copy: the reference log-probs are written beside it
        shutil.copytree(kit.data["dpo"].parent, folder)
        prefix = folder / kit.data["dpo"].name
        flags = _check_flags(kit, name, prefix, CHECK_ITERS, **dpo_train_args(
            prefix, seq_length=CHECK_SEQ_LENGTH, **CHECK_BATCH, **precision_flags))
        runs = _dpo_runs(kit, name, prefix, flags, force_cpu=force_cpu,
                         seq_length=CHECK_SEQ_LENGTH)
        runs["logps"] = np.load(f"{prefix}_reference_logps.npy").ravel().tolist()
        runs["losses"] = list(train_losses(kit.work / f"{name}.jsonl").values())
        return runs

    device, cpu = kit.device_and_cpu(check)
    logps_rel = max_rel_diff(device["logps"], cpu["logps"])
    loss_rel = max_rel_diff(device["losses"], cpu["losses"])
    _, tolerance, precision = _packed_check(kit, force_cpu=False)
    backend = kit.backend(packed=True)
    rows = [table_row("DPO", f"{precision} reference pass (g)", backend, device["reference"],
                      check=versus(logps_rel, tolerance) + " (log-probs)"),
            table_row("DPO", f"{precision} vs CPU fp32 (g)", backend, device["training"],
                      check=versus(loss_rel, tolerance))]
    speed = None
    if not kit.cpu:
        prefix = kit.data["dpo_speed"]
        speed = _dpo_runs(kit, "g_speed_bf16", prefix, _speed_flags(kit, dpo_train_args(
            prefix, seq_length=SPEED_SEQ_LENGTH)), seq_length=SPEED_SEQ_LENGTH)
        rows += [table_row("DPO", "bf16 ~1B reference pass (g)", backend, speed["reference"]),
                 table_row("DPO", "bf16 ~1B speed (g)", backend, speed["training"])]
    result = {"backend": backend, "iterations": CHECK_ITERS, "precision": precision,
              "device": device, "cpu": cpu, "logps_max_rel_diff": logps_rel,
              "loss_max_rel_diff": loss_rel,
              "first_loss_minus_ln2": device["losses"][0] - math.log(2),
              "tolerance": tolerance, "speed": speed, "rows": rows}
    _failures([("DPO reference log-probs", logps_rel, tolerance),
               ("DPO losses", loss_rel, tolerance)])
    return result


# ---------------------------------------------------------------------------------- h. evaluation
def evaluation(kit: Any) -> dict:
    """In-loop evaluation: per-option log-likelihoods and perplexity on the device vs the CPU."""
    exam, held_out = kit.data["exam"], kit.data["held_out"]

    def check(tag: str, force_cpu: bool) -> dict:
        name = f"h_{tag}_fp32"
        samples = kit.work / f"{name}_samples"
        flags = _check_flags(
            kit, name, kit.prefix, EVAL_ITERS, tokenizer_type="HuggingFaceTokenizer",
            tokenizer_model=HF_TOKENIZER, vocab_size=None, micro_batch_size=2, global_batch_size=4,
            eval_benchmark_interval=EVAL_ITERS, eval_benchmarks=f"{exam}:{EXAM_QUESTIONS}",
            eval_perplexity_inputs=held_out, eval_perplexity_seq_length=32,
            eval_log_samples=samples)
        record = kit.train(name, flags, force_cpu=force_cpu)
        scored = next(r for r in read_jsonl(kit.work / f"{name}.jsonl") if "benchmarks" in r)
        options = read_jsonl(samples / f"iter_{EVAL_ITERS:07d}" / "exam.jsonl")
        perplexity = scored["heldout_perplexity"][str(held_out)]
        tokens = sum(sum(r["num_tokens"]) for r in options) + perplexity["tokens"]
        return {**record, "loglik": [ll for r in options for ll in r["loglik"]],
                "perplexity": perplexity["perplexity"], "exam": scored["benchmarks"]["exam"],
                "scored_tokens": tokens, "benchmark_seconds": scored["benchmark_seconds"],
                "tokens_per_s": tokens / scored["benchmark_seconds"]}

    device, cpu = kit.device_and_cpu(check)
    loglik_rel = max_rel_diff(device["loglik"], cpu["loglik"])
    ppl_rel = max_rel_diff([device["perplexity"]], [cpu["perplexity"]])
    row = table_row("eval", "fp32 in-loop vs CPU fp32 (h)", kit.backend(),
                    {**device, "mfu_pct": None},  # scoring: no training FLOP count
                    check=versus(max(loglik_rel, ppl_rel), kit.tolerance)
                    + " (log-lik., ppl)")
    result = {"options": len(device["loglik"]), "device": device, "cpu": cpu,
              "loglik_max_rel_diff": loglik_rel, "perplexity_rel_diff": ppl_rel,
              "tolerance": kit.tolerance, "rows": [row]}
    _failures([("option log-likelihoods", loglik_rel, kit.tolerance),
               ("held-out perplexities", ppl_rel, kit.tolerance)])
    return result
