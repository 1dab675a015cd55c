"""A private one-node SLURM cluster for tests, and the job helpers the SLURM tests share.

munged, slurmctld and slurmd run with a config, ports and a munge socket under one temporary
folder, so the tests neither need nor disturb a system cluster; conftest's `slurm_cluster`
fixture starts one per session. tests/run.sh installs the Debian packages (as root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from _dist_helpers import REPO, free_port, signal_tree, wait_for

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun", "scancel")
COMMAND_TIMEOUT_S = 30  # one sinfo/squeue/scontrol/scancel call
START_TIMEOUT_S = 90  # munged + slurmctld + slurmd reaching an idle node
JOB_TIMEOUT_S = 420  # a training job with a restart on a loaded 2-core machine
ACTIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING")


# ---- the cluster ------------------------------------------------------------------------------

def skip_reason() -> str | None:
    """Why no private cluster can run here (binaries missing, not root); None if it can."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        return (f"SLURM/munge binaries missing ({', '.join(missing)}): apt-get install "
                "slurmctld slurmd slurm-client munge (tests/run.sh does, as root)")
    if os.geteuid() != 0:
        return "the private SLURM cluster runs munged/slurmctld/slurmd as root; run as root"
    return None


def slurm_conf(base: Path, host: str) -> str:
    """slurm.conf of a one-node cluster whose state, logs and sockets all live under ``base``."""
    return "\n".join([
        "ClusterName=telecomtest", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}", "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={base}/munge.socket", f"StateSaveLocation={base}/state",
        f"SlurmdSpoolDir={base}/spool", f"SlurmctldPidFile={base}/slurmctld.pid",
        f"SlurmdPidFile={base}/slurmd.pid", f"SlurmctldLogFile={base}/slurmctld.log",
        f"SlurmdLogFile={base}/slurmd.log", "SlurmUser=root", "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
        "MinJobAge=30",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=2048 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
    ])


def query(command: list[str], env: dict[str, str]) -> str | None:
    """stdout of a SLURM client command on the private cluster; None if it failed or hung."""
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def cluster_logs(base: Path) -> str:
    """The tails of the daemons' logs, for failure messages."""
    names = ("munged.log", "slurmctld.log", "slurmd.log", "daemons.out")
    return "".join(f"== {name}\n{(base / name).read_text(errors='replace')[-2000:]}\n"
                   for name in names if (base / name).exists())


def _wait_ready(ready: Callable[[], object], what: str, base: Path,
                daemons: list[subprocess.Popen]) -> None:
    """Wait for ``ready``; fail with the daemons' logs on timeout or a daemon's death."""
    def ready_or_dead() -> object:
        if result := ready():
            return result
        dead = [d.args[0] for d in daemons if d.poll() is not None]
        if dead:
            raise AssertionError(f"private SLURM cluster: {dead} exited before {what}:\n"
                                 f"{cluster_logs(base)}")
        return False

    wait_for(ready_or_dead, timeout=START_TIMEOUT_S, what=f"private SLURM cluster: {what}",
             poll=0.5, details=lambda: cluster_logs(base))


def reap_step_daemons(base: Path) -> None:
    """SIGKILL this cluster's slurmstepd processes and the job processes below them.

    They are found by their open files under ``base``; slurmstepd ignores SIGTERM once slurmd
    is gone.
    """
    steps: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not (proc / "cmdline").read_bytes().startswith(b"slurmstepd"):
                continue
            fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(target.startswith(str(base)) for target in fds):
            steps.add(int(proc.name))
    signal_tree(steps, signal.SIGKILL)


def _stop_cluster(daemons: list[subprocess.Popen], base: Path, env: dict[str, str]) -> None:
    """Cancel leftover jobs, stop the daemons (SIGTERM, then SIGKILL), kill stray step daemons."""
    if len(daemons) == 3 and query(["scancel", "--user", "root"], env) is not None:
        try:  # let slurmd end the cancelled jobs' steps itself
            wait_for(lambda: not query(["squeue", "-h"], env), timeout=20,
                     what="the cancelled jobs to leave the queue", poll=0.5)
        except AssertionError:
            pass  # what is left is killed below
    for daemon in reversed(daemons):
        daemon.terminate()
    for daemon in reversed(daemons):
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=20)
    reap_step_daemons(base)


@contextmanager
def private_cluster(base: Path) -> Iterator[dict[str, str]]:
    """Run a one-node cluster under the empty folder ``base``; yields its environment
    (SLURM_CONF set); on exit cancels its jobs and stops every process it started."""
    for sub in ("state", "spool"):
        (base / sub).mkdir()
    (base / "munge.key").write_bytes(os.urandom(1024))
    (base / "munge.key").chmod(0o400)
    (base / "slurm.conf").write_text(slurm_conf(base, socket.gethostname().split(".")[0]))
    env = {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}
    daemons: list[subprocess.Popen] = []
    with open(base / "daemons.out", "ab") as out:
        def start(*command: str) -> None:
            daemons.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))

        try:
            start("munged", "-F", "-f", f"--key-file={base}/munge.key",
                  f"--socket={base}/munge.socket", f"--pid-file={base}/munged.pid",
                  f"--log-file={base}/munged.log", f"--seed-file={base}/munged.seed")
            _wait_ready((base / "munge.socket").exists, "munge socket", base, daemons)
            start("slurmctld", "-D", "-i")
            _wait_ready(lambda: query(["sinfo", "-h"], env) is not None, "slurmctld answer",
                        base, daemons)
            start("slurmd", "-D")
            _wait_ready(lambda: (query(["sinfo", "-h", "-o", "%t"], env) or "").startswith("idle"),
                        "idle node", base, daemons)
            yield env
        finally:
            _stop_cluster(daemons, base, env)


# ---- jobs ---------------------------------------------------------------------------------------

def submit(env: dict[str, str], *args: str) -> str:
    """``sbatch --parsable ARGS`` from the repository root; the job id."""
    proc = subprocess.run(["sbatch", "--parsable", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_fields(env: dict[str, str], job: str) -> dict[str, str]:
    """``scontrol show job`` fields (JobState, Restarts, Reason, ExitCode...); {} once gone."""
    shown = query(["scontrol", "show", "job", "-o", job], env)
    return dict(re.findall(r"(\w+)=(\S*)", shown)) if shown is not None else {}


def log_tail(path: Path) -> str:
    """The end of a job's output file, for failure messages."""
    return path.read_text()[-4000:] if path.exists() else "(no output file yet)"


def wait_state(env: dict[str, str], job: str, state: str, timeout: float = 120) -> None:
    """Wait until SLURM shows ``job`` in ``state`` (RUNNING...)."""
    wait_for(lambda: job_fields(env, job).get("JobState") == state, timeout=timeout,
             what=f"job {job} to be {state}", poll=0.5, details=lambda: str(job_fields(env, job)))


def ended(env: dict[str, str], job: str) -> dict[str, str] | None:
    """The job's fields once it has ended for good (JobState GONE once scontrol forgot it), else
    None; a requeued job held until its BeginTime is released now, to keep tests fast."""
    fields = job_fields(env, job) or {"JobState": "GONE"}
    if fields["JobState"] not in ACTIVE_STATES:
        return fields
    if fields["JobState"] == "PENDING" and fields.get("Reason") == "BeginTime":
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env,
                       capture_output=True, timeout=COMMAND_TIMEOUT_S)
    return None


def wait_done(env: dict[str, str], job: str, log: Path,
              timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
    """The fields of ``job`` once it has ended; on timeout it is cancelled and the test fails
    with the tail of its output file ``log``."""
    try:
        return wait_for(lambda: ended(env, job), timeout=timeout, what=f"job {job} to end",
                        poll=1, details=lambda: log_tail(log))
    except AssertionError:
        subprocess.run(["scancel", job], env=env, timeout=COMMAND_TIMEOUT_S)
        raise


def wait_all(env: dict[str, str], jobs: list[str], logs: Path, timeout: float = 600) -> dict[str, str]:
    """job -> final JobState of every job in ``jobs``, polled together (a finished job leaves
    scontrol after MinJobAge); on timeout the message shows each ``*.out`` under ``logs``."""
    final: dict[str, str] = {}

    def all_ended() -> dict[str, str] | None:
        for job in set(jobs) - set(final):
            if (fields := ended(env, job)) is not None:
                final[job] = fields["JobState"]
        return final if len(final) == len(jobs) else None

    return wait_for(all_ended, timeout=timeout, what=f"jobs {jobs} to end", poll=1,
                    details=lambda: f"still running: {sorted(set(jobs) - set(final))}\n" + "".join(
                        p.read_text()[-2000:] for p in sorted(logs.rglob("*.out"))))


def wait_queue_empty(env: dict[str, str], timeout: float = 420) -> None:
    """Wait until ``squeue`` lists no job at all."""
    listing = ["squeue", "-h", "-o", "%i %j %T %r"]
    wait_for(lambda: query(listing, env) == "", timeout=timeout, what="an empty SLURM queue",
             poll=2, details=lambda: str(query(listing, env)))
