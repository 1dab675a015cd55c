"""SLURM self-requeue after a checkpointed stop, and the run folder's start/stop history.

A stop on SIGUSR1 (``--signal=USR1@300`` in slurm/pretrain.sh: the time limit is near) or on
SIGTERM (preemption) has saved a checkpoint on every rank when ``train`` returns; rank 0 then
asks SLURM to requeue the same job (``scontrol requeue``, as Lightning's auto_requeue and
submitit do). SLURM ends this run of the job, starts the batch script again (after holding it
for ``cred_expire``, 120 s by default) and the run resumes from --save. Decisions:

- Requeued: a stop on a signal, with --save, inside a SLURM job that has been restarted fewer
  than --max-requeues times (``SLURM_RESTART_COUNT``: SLURM's own requeues count too) and that
  SLURM still shows RUNNING. A job being cancelled (``scancel``, tested) or ended at its hard
  time limit shows COMPLETING and is left to end; a job preempted within its GraceTime should
  still show RUNNING (SLURM's documented behaviour, untested: no preemption here).
- Never requeued: a finished run (--train-iters), the --exit-duration-in-mins budget (the run's
  own limit), a failure (NaN/Inf, exception, bad configuration), a run without --save.
- Array jobs requeue their own task (``ARRAYJOBID_TASKID``).
- ``scontrol`` missing or refusing: print how to resubmit; the exit code stays 0.

The history, ``<save>/run_history.jsonl``, gets one JSON line per start and per stop (UTC time,
iteration, job, restart, reason, what happened about the requeue), written by rank 0 only; the
file is rewritten whole (temp + rename), so a kill mid-write never truncates it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from megatron_telecom.atomic import atomic_write_text
from megatron_telecom.runtime.distributed import detect_distributed_env
from megatron_telecom.training.signals import TRAINING_DONE, is_signal_stop

HISTORY_FILENAME = "run_history.jsonl"
FAILED = "failed: "  # prefix of the stop reason of a run that raised
SCONTROL_TIMEOUT_S = 60


@dataclass(frozen=True, kw_only=True)
class SlurmJob:
    """The SLURM job this process runs in, as ``scontrol`` names it."""

    job_id: str  # "1234", or "1200_7" for task 7 of array job 1200
    restart_count: int  # how often SLURM has requeued this job so far

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SlurmJob | None:
        """The job from SLURM's variables; None outside SLURM."""
        environ = os.environ if environ is None else environ
        if "SLURM_JOB_ID" not in environ:
            return None
        if "SLURM_ARRAY_JOB_ID" in environ and "SLURM_ARRAY_TASK_ID" in environ:
            job_id = f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
        else:
            job_id = environ["SLURM_JOB_ID"]
        return cls(job_id=job_id, restart_count=int(environ.get("SLURM_RESTART_COUNT") or 0))


@dataclass(frozen=True)
class Decision:
    """Whether to requeue after a stop, and why (for the log and the history)."""

    requeue: bool
    why: str


def decide(reason: str, *, job: SlurmJob | None, save: str | None,
           max_requeues: int) -> Decision:
    """Requeue only a signal stop with a checkpoint to resume, in a job below --max-requeues."""
    if reason == TRAINING_DONE:
        return Decision(False, "training finished")
    if reason.startswith(FAILED):
        return Decision(False, "the run failed")
    if not is_signal_stop(reason):
        return Decision(False, f"a stop on {reason} ends the run")
    if not save:
        return Decision(False, "no --save checkpoint to resume from")
    if job is None:
        return Decision(False, "not a SLURM job")
    if job.restart_count >= max_requeues:
        return Decision(False, f"job {job.job_id} was already requeued {job.restart_count} "
                               f"time(s) (--max-requeues {max_requeues})")
    return Decision(True, f"restart {job.restart_count + 1} of at most {max_requeues}")


def _scontrol(scontrol: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([scontrol, *args], capture_output=True, text=True,
                          timeout=SCONTROL_TIMEOUT_S)


def requeue_job(job_id: str) -> str | None:
    """Ask SLURM to requeue a RUNNING job; None when it accepted, else why not."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return "scontrol is not on PATH"
    try:
        shown = _scontrol(scontrol, "show", "job", "-o", job_id)
        state = re.search(r"\bJobState=(\S+)", shown.stdout)
        if shown.returncode or state is None:
            return f"scontrol show job {job_id} failed: {(shown.stderr or shown.stdout).strip()}"
        if state.group(1) != "RUNNING":
            return f"job {job_id} is {state.group(1)} in SLURM (cancelled, or ended by SLURM)"
        # Incomplete: never revive a job that got cancelled since the check above
        done = _scontrol(scontrol, "requeue", "Incomplete", job_id)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"scontrol failed: {err}"
    if done.returncode:
        return f"scontrol requeue {job_id} refused: {(done.stderr or done.stdout).strip()}"
    return None


def resubmit_hint(save: str | None) -> str:
    """How to continue by hand (slurm/pretrain.sh exports PRETRAIN_RESUBMIT)."""
    command = os.environ.get("PRETRAIN_RESUBMIT", "the same launch command")
    where = f" (it resumes from --save {save})" if save else ""
    return f"to continue, run {command} again{where}"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _writes_history() -> bool:
    """Rank 0 writes the history, known from the launcher's variables before init too."""
    try:
        return detect_distributed_env().rank == 0
    except ValueError:
        return False


class RunHistory:
    """``<save>/run_history.jsonl``: every start and stop of the run (rank 0 writes)."""

    def __init__(self, save: str | None, *, job: SlurmJob | None = None,
                 enabled: bool | None = None) -> None:
        self.enabled = _writes_history() if enabled is None else enabled
        self.path = Path(save) / HISTORY_FILENAME if save and self.enabled else None
        self.job = job

    def record(self, event: str, iteration: int | None, **fields: Any) -> None:
        """Append one event (start/stop) with the time, the iteration and the job."""
        if self.path is None:
            return
        entry = {"event": event, "time": _utc_now(), "iteration": iteration,
                 "job": self.job.job_id if self.job else None,
                 "restart": self.job.restart_count if self.job else None, **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        atomic_write_text(self.path, old + json.dumps(entry) + "\n")


def read_history(save: str | Path) -> list[dict[str, Any]]:
    """The events of ``<save>/run_history.jsonl`` in order (empty when there is none)."""
    path = Path(save) / HISTORY_FILENAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def after_stop(reason: str, *, iteration: int | None, save: str | None, max_requeues: int,
               history: RunHistory) -> bool:
    """Rank 0, after the stop's checkpoint is complete: requeue or say why not, and record it.

    Returns whether SLURM accepted a requeue. Other ranks return False and do nothing.
    """
    if not history.enabled:
        return False
    decision = decide(reason, job=history.job, save=save, max_requeues=max_requeues)
    if not decision.requeue:
        if history.job is not None or is_signal_stop(reason):  # torchrun: only what to do next
            print(f"not requeued after iteration {iteration}: {decision.why}", flush=True)
        if is_signal_stop(reason):
            print(resubmit_hint(save), flush=True)
        history.record("stop", iteration, reason=reason, requeued=False, why=decision.why)
        return False
    job_id = history.job.job_id
    # printed first: once SLURM accepts, it ends this run and its output may stop at any time
    print(f"requeuing job {job_id} after the checkpoint at iteration {iteration} ({reason}; "
          f"{decision.why})", flush=True)
    error = requeue_job(job_id)
    if error is None:
        history.record("stop", iteration, reason=reason, requeued=True, why=decision.why)
        return True
    print(f"not requeued: {error}; {resubmit_hint(save)}", flush=True)
    history.record("stop", iteration, reason=reason, requeued=False, why=error)
    return False
