"""``sbatch slurm/dpo.sh`` for real on conftest's private one-node SLURM cluster (issue 20).

Two CPU tasks run both DPO steps of one job: the reference log-probs (written with their
fingerprint), then training on them. Policy and reference are the same weights (the tiny
preset's seeded initialisation), so the first iteration is DPO's fixed point: loss ln 2. A second
job with the same data keeps the stored log-probs instead of computing them again.
"""

from __future__ import annotations

import json
import math

import pytest
from _dist_helpers import REPO, read_jsonl, subprocess_env, tiny_train_args
from _dpo_helpers import dpo_train_args, synthetic_pairs, write_dpo_dataset
from _slurm_helpers import log_tail, submit, wait_done

from megatron_telecom.models.checkpoint_format import read_tracker
from megatron_telecom.training.stages import dpo

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"


def _sbatch(env: dict, out, flags: list[str]) -> str:
    return submit(env, "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=00:10:00",
                  f"--output={out}", str(REPO / "slurm" / "dpo.sh"), str(CONFIG), *flags)


def test_dpo_job_computes_reference_logprobs_then_trains(slurm_cluster, tmp_path):
    pairs = write_dpo_dataset(tmp_path / "pairs", synthetic_pairs())
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))

    def flags(name: str) -> list[str]:
        return tiny_train_args(pairs, cache=tmp_path / "cache", train_iters=3, **dpo_train_args(
            pairs, seq_length=64, micro_batch_size=2, global_batch_size=4, lr_warmup_iters=0, save=tmp_path / name,
            log_metrics_file=tmp_path / f"{name}.jsonl"))

    log = tmp_path / "job.out"
    job = _sbatch(env, log, flags("first"))
    assert wait_done(env, job, log)["JobState"] == "COMPLETED", log_tail(log)
    logps_path, fingerprint_path = dpo.reference_paths(pairs)
    assert "> reference log-probs of 8 pairs" in log.read_text(), log_tail(log)
    fingerprint = json.loads(fingerprint_path.read_text())
    assert fingerprint["pairs"] == 8 and fingerprint["computed"]["layout"]["data_parallel_size"] == 2
    records = read_jsonl(tmp_path / "first.jsonl")
    assert [r["iteration"] for r in records] == [1, 2, 3] and records[0]["lm_loss"] == math.log(2)
    assert read_tracker(tmp_path / "first") == 3

    stamp = logps_path.stat().st_mtime_ns
    log2 = tmp_path / "job2.out"
    job2 = _sbatch(env, log2, flags("second"))
    assert wait_done(env, job2, log2)["JobState"] == "COMPLETED", log_tail(log2)
    assert "are current (fingerprint matches): kept" in log2.read_text()
    assert logps_path.stat().st_mtime_ns == stamp
    assert read_jsonl(tmp_path / "second.jsonl") == records  # the same run again, bit for bit
