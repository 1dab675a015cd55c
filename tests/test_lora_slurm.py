"""LoRA SFT under SLURM for real: requeued once, resuming from its adapter checkpoint (issue 28).

A tiny base (one full-parameter SFT step, SmolLM2's tokenizer) is written by a local launch; then
``sbatch slurm/pretrain.sh tiny_cpu.yaml --stage sft --lora-rank 8 --load BASE --finetune`` (two CPU
tasks) on conftest's private one-node cluster gets the time-limit signal once it trains: it saves its
adapters, requeues itself, and the restart loads the recorded base's weights and then its own adapter
checkpoint from ``--save``, up to --train-iters.
"""

from __future__ import annotations

import sys

import pytest
from _dist_helpers import REPO, run_subprocess, run_torchrun, subprocess_env, train_losses
from _slurm_helpers import signal_when_training, submit, wait_done

from megatron_telecom.models.checkpoint_format import open_checkpoint, read_tracker
from megatron_telecom.training.model_preparation import lora_record

CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"
FLAGS = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", "bundled:smollm2-135m",
         "--eval-interval", "0", "--log-interval", "1", "--lr-warmup-iters", "0", "--stage", "sft",
         "--seq-length", "512", "--micro-batch-size", "1", "--global-batch-size", "2",
         "--lr-decay-style", "constant"]


@pytest.mark.slow
def test_sbatch_lora_sft_requeues_and_resumes_from_its_adapter_checkpoint(slurm_cluster, tmp_path):
    proc = run_subprocess([sys.executable, str(REPO / "tools" / "preprocess_sft.py"),
                           "--input", str(REPO / "examples" / "data" / "telecom_sft_sample.jsonl"),
                           "--output-prefix", str(tmp_path / "sft"), "--seq-length", "512", "--workers", "1",
                           *FLAGS[:4]], env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = ["--sft-data-path", str(tmp_path / "sft")]
    base, lora, metrics = tmp_path / "base", tmp_path / "lora", tmp_path / "lora.jsonl"
    run_torchrun(1, ["--config", str(CONFIG), *FLAGS, *data, "--train-iters", "1", "--save", str(base)])

    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    log, train_iters = tmp_path / "lora.out", 30
    job = submit(env, "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=00:10:00",
                 f"--output={log}", "--job-name=telecom-lora-sft", str(REPO / "slurm" / "pretrain.sh"),
                 str(CONFIG), *FLAGS, *data, "--lora-rank", "8", "--lora-alpha", "16", "--load", str(base),
                 "--finetune", "--save", str(lora), "--train-iters", str(train_iters),
                 "--log-metrics-file", str(metrics))
    signal_when_training(env, job, metrics, log)
    final = wait_done(env, job, log)
    text = log.read_text()
    assert (final["JobState"], final["Restarts"]) == ("COMPLETED", "1"), text[-4000:]

    first, second = text.split(f"job {job} (restart 1)")
    assert f"loaded weights from {base}" in first and "trainable)" in first
    saved_at = int(second.split(f"loaded checkpoint {lora}/iter_")[1][:7])
    assert 0 < saved_at < train_iters
    assert f"loaded the base weights from {base}/iter_0000001" in second
    assert sorted(train_losses(metrics)) == list(range(1, train_iters + 1))
    assert read_tracker(lora) == train_iters
    record = lora_record(open_checkpoint(lora))
    assert record["base"]["root"] == str(base.resolve()) and record["options"]["lora_rank"] == 8
