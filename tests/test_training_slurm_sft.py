"""SFT under SLURM for real: ``sbatch slurm/pretrain.sh CONFIG --stage sft ...`` on conftest's
private one-node SLURM cluster.

A tiny continual-pretraining job and an SFT job that starts from its checkpoint (``--load CPT
--finetune``, ``--dependency=afterok``), two CPU tasks each, on the telecom samples tokenized with
SmolLM2's tokenizer. The SFT job gets the time-limit signal once it trains: it saves, requeues
itself, and the restart resumes from its own ``--save`` (not from the CPT weights again) up to
--train-iters. Its checkpoint says stage sft and keeps the CPT lineage the model card lists.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from _dist_helpers import REPO, subprocess_env, train_losses
from _slurm_helpers import signal_when_training, submit, wait_done

from megatron_telecom.convert.model_card import lineage
from megatron_telecom.models.checkpoint_format import open_checkpoint, read_tracker
from megatron_telecom.training.requeue import read_history

CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"
TOKENIZER = ["--tokenizer-type", "HuggingFaceTokenizer",
             "--tokenizer-model", "bundled:smollm2-135m"]
SFT_SEQ = 512  # every sample conversation fits (tools/preprocess_sft.py refuses longer ones)


@pytest.fixture(scope="module")
def sft_slurm_data(tmp_path_factory) -> dict[str, Path]:
    """The telecom text (pretraining) and SFT samples, preprocessed with SmolLM2's tokenizer."""
    root = tmp_path_factory.mktemp("sft_slurm_data")
    samples = REPO / "examples" / "data"
    runs = {"preprocess_data.py": ["--input", str(samples / "telecom_sample.jsonl"),
                                   "--output-prefix", str(root / "text"), "--append-eod"],
            "preprocess_sft.py": ["--input", str(samples / "telecom_sft_sample.jsonl"),
                                  "--output-prefix", str(root / "sft"),
                                  "--seq-length", str(SFT_SEQ)]}
    for tool, flags in runs.items():
        proc = subprocess.run([sys.executable, str(REPO / "tools" / tool), *flags, *TOKENIZER,
                               "--workers", "1"],
                              env=subprocess_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return {"text": root / "text_text_document", "sft": root / "sft"}


def _sbatch(env: dict, out: Path, *args: str) -> str:
    return submit(env, "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1",
                  "--time=00:10:00", f"--output={out}", *args)


@pytest.mark.slow
def test_sbatch_cpt_then_sft_requeues_and_finishes_as_stage_sft(slurm_cluster, sft_slurm_data,
                                                                 tmp_path):
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    cpt, sft, metrics = tmp_path / "cpt", tmp_path / "sft", tmp_path / "sft_metrics.jsonl"
    logs = {name: tmp_path / f"{name}.out" for name in ("cpt", "sft")}
    common = [*TOKENIZER, "--eval-interval", "0", "--log-interval", "1", "--lr-warmup-iters", "0"]
    cpt_job = _sbatch(env, logs["cpt"], str(REPO / "slurm" / "pretrain.sh"), str(CONFIG), *common,
                      "--data-path", str(sft_slurm_data["text"]),
                      "--data-cache-path", str(tmp_path / "cache"),
                      "--train-iters", "2", "--save", str(cpt))
    train_iters = 40
    sft_job = _sbatch(env, logs["sft"], f"--dependency=afterok:{cpt_job}", "--job-name=telecom-sft",
                      str(REPO / "slurm" / "pretrain.sh"), str(CONFIG), *common,
                      "--stage", "sft", "--sft-data-path", str(sft_slurm_data["sft"]),
                      "--seq-length", str(SFT_SEQ), "--micro-batch-size", "1",
                      "--global-batch-size", "2",
                      "--lr-decay-style", "constant", "--train-iters", str(train_iters),
                      "--load", str(cpt), "--finetune", "--save", str(sft),
                      "--log-metrics-file", str(metrics))
    signal_when_training(env, sft_job, metrics, logs["sft"])
    assert wait_done(env, cpt_job, logs["cpt"])["JobState"] in ("COMPLETED", "GONE")
    final = wait_done(env, sft_job, logs["sft"])
    text = logs["sft"].read_text()
    assert (final["JobState"], final["Restarts"]) == ("COMPLETED", "1"), text[-4000:]

    # restart 0 starts from the CPT weights; restart 1 resumes from its own SFT checkpoint
    first, second = text.split(f"job {sft_job} (restart 1)")
    assert f"loaded weights from {cpt}" in first and f"loaded weights from {cpt}" not in second
    saved_at = read_history(sft)[1]["iteration"]
    assert 0 < saved_at < train_iters
    assert f"requeuing job {sft_job} after the checkpoint at iteration {saved_at}" in first
    assert f"--save {sft} holds a checkpoint: resuming from it, not --load {cpt}" in second
    assert f"loaded checkpoint {sft}/iter_{saved_at:07d}" in second
    assert f"not requeued after iteration {train_iters}: training finished" in second
    assert [(e["event"], e["iteration"]) for e in read_history(sft)] == \
        [("start", 0), ("stop", saved_at), ("start", saved_at), ("stop", train_iters)]

    # the checkpoint is an SFT one whose lineage goes back to the CPT run (the model card's stages)
    assert read_tracker(sft) == train_iters
    stored = open_checkpoint(sft)
    assert stored.args.stage == "sft" and stored.args.sft_data_path == str(sft_slurm_data["sft"])
    assert [s.args.stage for s in lineage(stored)] == ["sft", "pretrain"]

    # every iteration's assistant-token loss is logged, finite, and falls
    losses = train_losses(metrics)
    assert sorted(losses) == list(range(1, train_iters + 1))
    assert all(math.isfinite(loss) for loss in losses.values())
    assert "lm loss" in text
    first_five = sum(losses[i] for i in range(1, 6)) / 5
    last_five = sum(losses[i] for i in range(train_iters - 4, train_iters + 1)) / 5
    assert last_five < first_five - 0.5, losses
