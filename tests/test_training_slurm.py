"""``sbatch slurm/pretrain.sh`` for real on conftest's private one-node SLURM cluster.

Two CPU tasks train the tiny model; ``scancel --signal=USR1`` (what ``--signal=USR1@300``
sends before the time limit) makes every task save a checkpoint and exit 0, and submitting
the same command again resumes from that checkpoint and finishes.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from _dist_helpers import REPO, read_jsonl, subprocess_env, tiny_train_args, write_token_dataset

from megatron_telecom.training.checkpointing import read_tracker

CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"


def _sbatch(env: dict, out, flags: list[str]) -> str:
    proc = subprocess.run(
        ["sbatch", "--parsable", "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1",
         "--time=00:10:00", f"--output={out}", str(REPO / "slurm" / "pretrain.sh"), str(CONFIG),
         *flags], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def _state(env: dict, job: str) -> str:
    proc = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True,
                          text=True, timeout=30)
    match = re.search(r"JobState=(\S+)", proc.stdout)
    return match.group(1) if match else "GONE"


def _wait_done(env: dict, job: str, log, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(env, job)
        if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return state
        time.sleep(1)
    subprocess.run(["scancel", job], env=env, timeout=30)
    pytest.fail(f"job {job} not done after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_sbatch_pretrain_preempted_by_usr1_then_resubmitted(slurm_cluster, tmp_path):
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    prefix = write_token_dataset(tmp_path / "tokens")
    save, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"

    def flags(train_iters: int) -> list[str]:
        return tiny_train_args(prefix, cache=tmp_path / "cache", train_iters=train_iters,
                               save=save, log_metrics_file=metrics)

    log1 = tmp_path / "job1.out"
    job = _sbatch(env, log1, flags(100_000))
    deadline = time.monotonic() + 240
    while not (metrics.exists() and len(read_jsonl(metrics)) >= 2):
        assert time.monotonic() < deadline, log1.read_text()[-3000:] if log1.exists() else "no log"
        assert _state(env, job) in ("PENDING", "RUNNING", "CONFIGURING"), log1.read_text()[-3000:]
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True, timeout=30)
    assert _wait_done(env, job, log1) == "COMPLETED", log1.read_text()[-3000:]
    stopped = re.search(r"exiting at iteration (\d+) on signal SIGUSR1", log1.read_text())
    assert stopped, log1.read_text()[-3000:]
    saved_at = int(stopped.group(1))
    assert read_tracker(save) == saved_at

    log2 = tmp_path / "job2.out"
    # resubmitted (stopping 2 iterations later: a new schedule length, hence the override)
    job2 = _sbatch(env, log2, [*flags(saved_at + 2), "--override-opt_param-scheduler"])
    assert _wait_done(env, job2, log2) == "COMPLETED", log2.read_text()[-3000:]
    assert f"loaded checkpoint {save}/iter_{saved_at:07d}" in log2.read_text()
    assert read_tracker(save) == saved_at + 2
