"""The requeue decision, the job id SLURM knows, the run history, and ``scontrol requeue`` on
conftest's private SLURM cluster (batch jobs that only sleep: no training)."""

from __future__ import annotations

import re
import subprocess

import pytest
from _slurm_helpers import job_fields, submit, wait_state

from megatron_telecom.training.arguments import parse_config
from megatron_telecom.training.requeue import (
    Decision,
    RunHistory,
    SlurmJob,
    decide,
    read_history,
    requeue_job,
)

JOB = SlurmJob(job_id="77", restart_count=1)


@pytest.mark.parametrize(("reason", "job", "save", "expected"), [
    ("signal SIGUSR1", JOB, "ckpt", Decision(True, "restart 2 of at most 3")),
    ("signal SIGTERM", JOB, "ckpt", Decision(True, "restart 2 of at most 3")),
    ("done", JOB, "ckpt", Decision(False, "training finished")),
    ("failed: lm loss is nan at iteration 3", JOB, "ckpt", Decision(False, "the run failed")),
    ("time limit (--exit-duration-in-mins 5)", JOB, "ckpt",
     Decision(False, "a stop on time limit (--exit-duration-in-mins 5) ends the run")),
    ("signal SIGUSR1", JOB, None, Decision(False, "no --save checkpoint to resume from")),
    ("signal SIGUSR1", None, "ckpt", Decision(False, "not a SLURM job")),
    ("signal SIGUSR1", SlurmJob(job_id="77", restart_count=3), "ckpt",
     Decision(False, "job 77 was already requeued 3 time(s) (--max-requeues 3)")),
])
def test_decide(reason, job, save, expected):
    assert decide(reason, job=job, save=save, max_requeues=3) == expected


def test_max_requeues_flag():
    required = ["--train-iters", "5", "--lr", "1e-4", "--tokenizer-type", "NullTokenizer",
                "--vocab-size", "512", "--data-path", "/data/a"]
    assert parse_config([*required, "--max-requeues", "2"]).training.max_requeues == 2
    assert parse_config(required).training.max_requeues == 5
    with pytest.raises(ValueError, match="--max-requeues -1: give 0"):
        parse_config([*required, "--max-requeues", "-1"])


def test_slurm_job_from_environ_names_array_tasks():
    assert SlurmJob.from_environ({}) is None
    assert SlurmJob.from_environ({"SLURM_JOB_ID": "12"}) == SlurmJob(job_id="12", restart_count=0)
    array_task = {"SLURM_JOB_ID": "15", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3",
                  "SLURM_RESTART_COUNT": "2"}
    assert SlurmJob.from_environ(array_task) == SlurmJob(job_id="12_3", restart_count=2)


def test_run_history_appends_events_and_only_rank_0_writes(tmp_path):
    history = RunHistory(str(tmp_path / "ckpt"), job=JOB, enabled=True)
    history.record("start", 0)
    history.record("stop", 5, reason="signal SIGUSR1", requeued=True)
    RunHistory(str(tmp_path / "ckpt"), job=JOB, enabled=False).record("start", 9)
    RunHistory(None, job=JOB, enabled=True).record("start", 9)  # no --save: nothing to write
    events = read_history(tmp_path / "ckpt")
    assert [(e["event"], e["iteration"], e["job"], e["restart"]) for e in events] == \
        [("start", 0, "77", 1), ("stop", 5, "77", 1)]
    assert events[1]["reason"] == "signal SIGUSR1" and events[1]["requeued"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", events[0]["time"])
    assert not list((tmp_path / "ckpt").glob(".*tmp*"))  # written through temp + rename


def _sleeping_job(env: dict, *options: str) -> str:
    return submit(env, "--requeue", "--output=/dev/null", *options, "--wrap", "sleep 120")


def test_requeue_job_asks_slurm_and_reports_refusals(slurm_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    env = dict(slurm_cluster)
    array_job = _sleeping_job(env, "--array=4")
    task = f"{array_job}_4"  # array jobs requeue their own task
    wait_state(env, task, "RUNNING")
    assert requeue_job(task) is None
    assert job_fields(env, task)["Restarts"] == "1"
    subprocess.run(["scancel", array_job], env=env, timeout=30, check=True)

    cancelled = _sleeping_job(env)
    wait_state(env, cancelled, "RUNNING")
    subprocess.run(["scancel", cancelled], env=env, timeout=30, check=True)
    error = requeue_job(cancelled)  # a user's scancel wins over the requeue
    assert error is not None and re.match(rf"job {cancelled} is (COMPLETING|CANCELLED) in SLURM",
                                          error), error
    assert job_fields(env, cancelled)["Restarts"] == "0"

    assert requeue_job("987654").startswith("scontrol show job 987654 failed: ")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert requeue_job(cancelled) == "scontrol is not on PATH"
