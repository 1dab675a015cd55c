"""``sbatch slurm/pretrain.sh`` for real on conftest's private one-node SLURM cluster.

Two CPU tasks train the tiny model. ``scancel --signal=USR1`` is what ``--signal=USR1@300``
sends before the time limit: every task saves a checkpoint, rank 0 requeues the job, and the
same job id resumes from that checkpoint up to --train-iters, with the losses of a run that was
never interrupted. A failed run, a job at --max-requeues and a job without scontrol are not
requeued. SLURM holds a requeued job for cred_expire (120 s) before it may start again; the
tests lift that hold with ``scontrol update StartTime=now`` to stay fast.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from _dist_helpers import (
    REPO,
    subprocess_env,
    tiny_train_args,
    train_losses,
    write_token_dataset,
)
from _slurm_helpers import log_tail, signal_when_training, submit, wait_done

from megatron_telecom.training.checkpointing import read_tracker
from megatron_telecom.training.requeue import read_history

CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return write_token_dataset(tmp_path_factory.mktemp("slurm_data") / "tokens")


def _flags(tokens: Path, root: Path, train_iters: int, **extra: object) -> list[str]:
    return tiny_train_args(tokens, cache=root / "cache", train_iters=train_iters,
                           save=root / "ckpt", log_metrics_file=root / "metrics.jsonl", **extra)


def _sbatch(env: dict, out: Path, flags: list[str], *sbatch_options: str) -> str:
    return submit(env, "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1",
                  "--time=00:10:00", f"--output={out}", *sbatch_options,
                  str(REPO / "slurm" / "pretrain.sh"), str(CONFIG), *flags)


def _stopped_at(log: Path) -> int:
    stopped = re.search(r"exiting at iteration (\d+) on signal SIGUSR1", log.read_text())
    assert stopped, log_tail(log)
    return int(stopped.group(1))


@pytest.mark.slow
def test_time_limit_signal_requeues_and_resumes_to_train_iters(slurm_cluster, tokens, tmp_path):
    train_iters = 40
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    root, log = tmp_path / "job", tmp_path / "job.out"
    job = _sbatch(env, log, _flags(tokens, root, train_iters))
    signal_when_training(env, job, root / "metrics.jsonl", log)
    final = wait_done(env, job, log)
    text = log.read_text()
    assert (final["JobState"], final["Restarts"]) == ("COMPLETED", "1"), text[-4000:]
    saved_at = _stopped_at(log)
    assert 0 < saved_at < train_iters
    # one output file: the first run, the requeue, the restart that resumes and finishes
    assert f"job {job} (restart 0)" in text and f"job {job} (restart 1)" in text
    assert f"requeuing job {job} after the checkpoint at iteration {saved_at}" in text
    assert f"loaded checkpoint {root / 'ckpt'}/iter_{saved_at:07d}" in text
    assert f"not requeued after iteration {train_iters}: training finished" in text
    assert read_tracker(root / "ckpt") == train_iters
    events = [(e["event"], e["iteration"], e["restart"], e.get("reason"), e.get("requeued"))
              for e in read_history(root / "ckpt")]
    assert events == [("start", 0, 0, None, None),
                      ("stop", saved_at, 0, "signal SIGUSR1", True),
                      ("start", saved_at, 1, None, None),
                      ("stop", train_iters, 1, "done", False)]

    # the same job (same config file and flags), never signalled
    reference, reference_log = tmp_path / "reference", tmp_path / "reference.out"
    reference_job = _sbatch(env, reference_log, _flags(tokens, reference, train_iters))
    assert wait_done(env, reference_job, reference_log)["JobState"] == "COMPLETED", \
        log_tail(reference_log)
    expected, got = train_losses(reference / "metrics.jsonl"), train_losses(root / "metrics.jsonl")
    assert sorted(got) == list(range(1, train_iters + 1))
    assert {i: got[i] for i in expected if i > saved_at} == \
        {i: loss for i, loss in expected.items() if i > saved_at}  # bitwise: floats compared ==


@pytest.mark.slow
def test_failed_run_is_not_requeued(slurm_cluster, tokens, tmp_path):
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    root, log = tmp_path / "job", tmp_path / "job.out"
    job = _sbatch(env, log, _flags(tokens, root, 50, lr=1e30, min_lr=0, clip_grad=0))
    final = wait_done(env, job, log)
    text = log.read_text()
    assert (final["JobState"], final["Restarts"]) == ("FAILED", "0"), text[-4000:]
    assert re.search(r"(lm loss|grad norm) is (nan|inf) at iteration \d+", text), text[-4000:]
    assert "not requeued after iteration" in text and "the run failed" in text
    assert "requeuing" not in text
    stop = read_history(root / "ckpt")[-1]
    assert stop["event"] == "stop" and stop["requeued"] is False
    assert stop["reason"].startswith("failed: ") and stop["why"] == "the run failed"


@pytest.mark.slow
def test_max_requeues_reached_completes_and_resubmission_resumes(slurm_cluster, tokens, tmp_path):
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    root, log = tmp_path / "job", tmp_path / "job.out"
    job = _sbatch(env, log, _flags(tokens, root, 100_000, max_requeues=0))
    signal_when_training(env, job, root / "metrics.jsonl", log)
    final = wait_done(env, job, log)
    assert (final["JobState"], final["Restarts"]) == ("COMPLETED", "0"), log_tail(log)
    saved_at = _stopped_at(log)
    assert f"job {job} was already requeued 0 time(s) (--max-requeues 0)" in log.read_text()
    assert "to continue, run sbatch [your sbatch options] slurm/pretrain.sh" in log.read_text()
    assert read_tracker(root / "ckpt") == saved_at

    log2 = tmp_path / "job2.out"
    # resubmitted (stopping 2 iterations later: a new schedule length, hence the override)
    job2 = _sbatch(env, log2, [*_flags(tokens, root, saved_at + 2),
                               "--override-opt_param-scheduler"])
    assert wait_done(env, job2, log2)["JobState"] == "COMPLETED", log_tail(log2)
    assert f"loaded checkpoint {root / 'ckpt'}/iter_{saved_at:07d}" in log2.read_text()
    assert read_tracker(root / "ckpt") == saved_at + 2
    assert [e["event"] for e in read_history(root / "ckpt")] == ["start", "stop"] * 2


@pytest.mark.slow
def test_without_scontrol_the_job_completes_and_says_how_to_resubmit(slurm_cluster, tokens,
                                                                       tmp_path):
    """Compute nodes without SLURM's client tools: PATH holds srun and coreutils, no scontrol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("srun", "date", "dirname"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"], PRETRAIN_ROOT=str(REPO))
    root, log = tmp_path / "job", tmp_path / "job.out"
    job = _sbatch(env, log, _flags(tokens, root, 100_000), f"--export=ALL,PATH={bin_dir}")
    signal_when_training(env, job, root / "metrics.jsonl", log)
    final = wait_done(env, job, log)
    text = log.read_text()
    assert (final["JobState"], final["Restarts"], final["ExitCode"]) == ("COMPLETED", "0", "0:0"), \
        text[-4000:]
    saved_at = _stopped_at(log)
    assert f"requeuing job {job} after the checkpoint at iteration {saved_at}" in text
    assert "not requeued: scontrol is not on PATH; to continue, run sbatch" in text
    stop = read_history(root / "ckpt")[-1]
    assert (stop["iteration"], stop["requeued"], stop["why"]) == \
        (saved_at, False, "scontrol is not on PATH")
