"""A real SLURM run of the curation pipeline on a private one-node cluster.

The fixture starts its own munged, slurmctld and slurmd (Debian packages) with a config,
ports and sockets under a temporary folder, so it neither needs nor disturbs a system
cluster. Skipped when the SLURM/munge binaries are absent or we are not root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(base: Path, host: str) -> str:
    port = _free_port()
    return "\n".join([
        "ClusterName=curationtest", f"SlurmctldHost={host}", f"SlurmctldPort={port}",
        f"SlurmdPort={_free_port()}", "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={base}/munge.socket", f"StateSaveLocation={base}/state",
        f"SlurmdSpoolDir={base}/spool", f"SlurmctldPidFile={base}/slurmctld.pid",
        f"SlurmdPidFile={base}/slurmd.pid", f"SlurmctldLogFile={base}/slurmctld.log",
        f"SlurmdLogFile={base}/slurmd.log", "SlurmUser=root", "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
        "MinJobAge=30",
        f"NodeName={host} CPUs={os.cpu_count() or 1} RealMemory=2048 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
    ])


@pytest.fixture(scope="module")
def curation_slurm_cluster(tmp_path_factory):
    """Environment (SLURM_CONF) of a running private one-node SLURM cluster."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and SLURM/munge binaries (missing: {missing or 'root'}); "
                    "apt-get install slurmctld slurmd slurm-client munge")
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (base / sub).mkdir()
    (base / "munge.key").write_bytes(os.urandom(1024))
    (base / "munge.key").chmod(0o400)
    host = socket.gethostname().split(".")[0]
    (base / "slurm.conf").write_text(_slurm_conf(base, host))
    env = {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}
    daemons = [
        subprocess.Popen(["munged", "-F", "-f", f"--key-file={base}/munge.key",
                          f"--socket={base}/munge.socket", f"--pid-file={base}/munged.pid",
                          f"--log-file={base}/munged.log", f"--seed-file={base}/munged.seed"]),
    ]
    time.sleep(1)
    daemons.append(subprocess.Popen(["slurmctld", "-D", "-i"], env=env))
    time.sleep(2)
    daemons.append(subprocess.Popen(["slurmd", "-D"], env=env))
    try:
        _wait_for_idle_node(env, base)
        yield env
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in reversed(daemons):
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        _reap_step_daemons(base)


def _reap_step_daemons(base: Path) -> None:
    """Kill slurmstepd processes of this private cluster (found by their log under `base`)."""
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
            os.kill(int(proc.name), signal.SIGKILL)  # it ignores SIGTERM once slurmd is gone


def _wait_for_idle_node(env: dict, base: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                               text=True).stdout.strip()
        if state.startswith("idle"):
            return
        time.sleep(1)
    logs = "".join((base / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log")
                   if (base / f).exists())
    pytest.fail(f"private SLURM cluster did not come up (node state {state!r}):\n{logs}")


def _wait_for_empty_queue(env: dict, timeout: float = 420) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %j %T %r"], env=env, capture_output=True,
                               text=True).stdout.strip()
        if not queue:
            return
        time.sleep(2)
    pytest.fail(f"SLURM jobs still queued after {timeout}s:\n{queue}")


def test_curation_on_a_real_slurm_cluster(curation_slurm_cluster, curation_rfc_dir, tmp_path):
    env = curation_slurm_cluster
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("rfc768", "rfc3311", "rfc3515"):
        shutil.copy(curation_rfc_dir / f"{name}.txt", inputs / f"{name}.txt")
    shutil.copy(curation_rfc_dir / "rfc3515.txt", inputs / "rfc3515-copy.txt")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "tools" / "curate_corpus.py"), "--input", str(inputs),
               "--output-dir", str(out), "--executor", "slurm", "--partition", "debug",
               "--tasks", "2", "--workers", "-1", "--mem-per-cpu-gb", "1", "--time", "00:10:00",
               "--minhash-buckets", "2", "--job-name", "curtest",
               "--env-command", f"source {sys.prefix}/bin/activate; cd {ROOT}"]
    submitted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "SLURM jobs submitted" in submitted.stdout
    _wait_for_empty_queue(env)
    report_run = subprocess.run([*command, "--report-only"], env=env, capture_output=True,
                                text=True, timeout=120)
    assert report_run.returncode == 0, report_run.stderr[-3000:] + _slurm_logs(out)
    report = json.loads((out / "curation_stats.json").read_text())
    assert report["output"]["documents"] == 3, _slurm_logs(out)
    assert report["removed_by_reason"] == {"exact_duplicate": 1}
    docs = [json.loads(line) for shard in out.glob("*.jsonl") for line in shard.open()]
    assert sorted(d["doc_id"] for d in docs) == ["rfc3311", "rfc3515", "rfc768"]
    resubmit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resubmit.returncode == 0 and "Skipping launch" in resubmit.stderr  # all complete


def _slurm_logs(out: Path) -> str:
    logs = sorted((out / "_work" / "logs").glob("*/slurm_logs/*.out"))
    return "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in logs[-4:])
