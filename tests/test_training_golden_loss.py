"""Golden losses of the `tiny` preset for every stage: the first iterations, bitwise, from a fixed seed.

One plain process (no torchrun) per stage trains on synthetic data; its metrics must equal
tests/golden/losses/<stage>.json to the last bit, so a refactor that changes numerics fails here
at once (the stage interface was checked this way: the files were written by the tree before it).
- pretrain: a synthetic indexed dataset, cosine schedule;
- sft: packed synthetic conversations (block-diagonal mask, per-document RoPE);
- dpo: synthetic pairs; the reference log-probs pass first (its sums are golden too), then training
  with the RPO term, every reported DPO metric compared.
Bitwise holds on one kind of machine only: CPU kernels (MKL, oneDNN) sum in other orders on other
processors (an Intel AVX-512 machine and an AMD AVX2 one differ by ~2e-8 relative). A file keeps
one record per machine key (CPU vendor, torch's CPU capability, torch version); on a recorded
machine the check is bitwise, on another every value must be within GOLDEN_RTOL of the first
record, and the message says how to record that machine too. A deliberate change of numerics,
or a new machine, regenerates / adds its record:
``GOLDEN_UPDATE=1 python -m pytest tests/test_training_golden_loss.py``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from _dist_helpers import (
    REPO,
    free_port,
    read_jsonl,
    run_subprocess,
    subprocess_env,
    tiny_train_args,
    write_token_dataset,
)
from _dpo_helpers import dpo_train_args, synthetic_pairs, write_dpo_dataset
from _sft_helpers import sft_train_args, synthetic_conversations, write_sft_dataset

GOLDEN = REPO / "tests" / "golden" / "losses"
ITERATIONS = 5
GOLDEN_RTOL = 1e-6
DPO_METRICS = ("lm_loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
               "rewards/margins")


def _pretrain(args: list[str]) -> None:
    env = subprocess_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    proc = run_subprocess([sys.executable, "-m", "megatron_telecom.pretrain", *args], env=env,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _stage_args(stage: str, tmp_path: Path) -> list[str]:
    """The flags of the stage's golden run (data written under ``tmp_path``)."""
    common = {"cache": tmp_path / "cache", "train_iters": ITERATIONS,
              "log_metrics_file": tmp_path / "metrics.jsonl"}
    if stage == "pretrain":  # seeded: the same tokens everywhere
        return tiny_train_args(write_token_dataset(tmp_path / "tokens"), **common)
    if stage == "sft":
        prefix = write_sft_dataset(tmp_path / "sft", synthetic_conversations(count=24), seq_length=64)
        return tiny_train_args(prefix, **common, **sft_train_args(prefix, lr=1e-3))
    prefix = write_dpo_dataset(tmp_path / "pairs", synthetic_pairs(count=12))
    return tiny_train_args(prefix, **common, **dpo_train_args(
        prefix, micro_batch_size=2, global_batch_size=4, lr=1e-3, dpo_sft_loss_weight=0.5))


def _metrics(stage: str, tmp_path: Path) -> dict[str, list[float]]:
    records = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "lm_loss" in r]
    names = DPO_METRICS if stage == "dpo" else ("lm_loss",)
    found = {name: [r[name] for r in records] for name in names}
    if stage == "dpo":
        logps = np.load(tmp_path / "pairs_reference_logps.npy")
        found["reference_logps"] = [float(x) for x in logps.ravel()]
    return found


def machine_key() -> str:
    """What decides the CPU kernels' summation order: vendor, torch's CPU capability, torch."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    vendor = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")),
                  "unknown-vendor")
    return f"{vendor} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo"])
def test_tiny_metrics_are_the_golden_ones(stage, tmp_path):
    args = _stage_args(stage, tmp_path)
    if stage == "dpo":
        _pretrain([*args, "--compute-reference-logprobs"])
    _pretrain(args)
    found = _metrics(stage, tmp_path)
    assert all(len(v) == ITERATIONS for k, v in found.items() if k != "reference_logps"), found
    golden_file = GOLDEN / ("tiny.json" if stage == "pretrain" else f"tiny_{stage}.json")
    record = json.loads(golden_file.read_text()) if golden_file.exists() else {"machines": {}}
    key = machine_key()
    if os.environ.get("GOLDEN_UPDATE"):
        record["flags"] = " ".join(a for a in args if not a.startswith(str(tmp_path)))
        record["machines"][key] = found
        golden_file.write_text(json.dumps(record, indent=2) + "\n")
    if key in record["machines"]:
        for name, values in found.items():
            golden = record["machines"][key][name]
            assert [float.hex(x) for x in values] == [float.hex(x) for x in golden], name
        return
    recorded, golden = next(iter(record["machines"].items()))
    for name, values in found.items():
        for x, g in zip(values, golden[name], strict=True):
            assert math.isclose(x, g, rel_tol=GOLDEN_RTOL, abs_tol=GOLDEN_RTOL), (
                f"{name}: {values} vs {golden[name]} recorded on {recorded!r}; this machine "
                f"({key!r}) has no record: GOLDEN_UPDATE=1 adds one")
