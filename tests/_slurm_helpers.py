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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from _dist_helpers import REPO, free_port, read_jsonl, signal_tree, wait_for

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


def slurm_conf(base: Path, host: str, *, controller_addr: str = "127.0.0.1",
               nodes: dict[str, str] | None = None, cpus: int | None = None,
               memory_mb: int = 2048, cred_expire: int = 120, extra: tuple[str, ...] = ()) -> str:
    """slurm.conf of a cluster whose state, logs and sockets all live under ``base``.

    ``nodes`` maps node name -> address (default: this host on 127.0.0.1); with several nodes
    each slurmd keeps its spool folder, pid and log file under its name (``%n``).
    """
    daemon = "-%n" if nodes else ""  # several slurmd: files of their own
    nodes = nodes or {host: "127.0.0.1"}
    cpus = cpus or os.cpu_count() or 1
    return "\n".join([
        "ClusterName=telecomtest", f"SlurmctldHost={host}({controller_addr})",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", "AuthType=auth/munge",
        "CredType=cred/munge", f"AuthInfo=socket={base}/munge.socket,cred_expire={cred_expire}",
        f"StateSaveLocation={base}/state", f"SlurmdSpoolDir={base}/spool{daemon}",
        f"SlurmctldPidFile={base}/slurmctld.pid", f"SlurmdPidFile={base}/slurmd{daemon}.pid",
        f"SlurmctldLogFile={base}/slurmctld.log", f"SlurmdLogFile={base}/slurmd{daemon}.log",
        "SlurmUser=root", "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
        "MinJobAge=30", *extra,
        *(f"NodeName={name} NodeAddr={addr} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN"
          for name, addr in nodes.items()),
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
    names = ("munged.log", "slurmctld.log", "slurmd.log",
             *(f"slurmd-{name}.log" for name in NODE_NAMES), "daemons.out")
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
    if len(daemons) >= 3 and query(["scancel", "--user", "root"], env) is not None:
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


def _die_with_parent() -> None:
    """In a daemon before exec: SIGKILL when the test process dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _write_config(base: Path, conf: str) -> dict[str, str]:
    """The folders, munge key and slurm.conf under ``base``; the environment naming them."""
    (base / "state").mkdir()
    (base / "munge.key").write_bytes(os.urandom(1024))
    (base / "munge.key").chmod(0o400)
    (base / "slurm.conf").write_text(conf)
    return {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}


class _Daemons:
    """The daemons of one cluster, started with their output in ``base``/daemons.out."""

    def __init__(self, base: Path, env: dict[str, str], out: IO[bytes]) -> None:
        self.base, self.env, self.out = base, env, out
        self.procs: list[subprocess.Popen] = []

    def start(self, *command: str) -> subprocess.Popen:
        """Start one daemon (killed if the test process dies)."""
        self.procs.append(subprocess.Popen(command, env=self.env, stdout=self.out,
                                           stderr=self.out, preexec_fn=_die_with_parent))
        return self.procs[-1]

    def wait_ready(self, ready: Callable[[], object], what: str) -> None:
        """Wait for ``ready``; fail with the logs on timeout or when a daemon died."""
        _wait_ready(ready, what, self.base, self.procs)


@contextmanager
def _controller(base: Path, env: dict[str, str]) -> Iterator[_Daemons]:
    """munged and slurmctld running; yields their _Daemons, to start slurmd with. On exit
    cancels the jobs and stops every daemon started."""
    with open(base / "daemons.out", "ab") as out:
        daemons = _Daemons(base, env, out)
        try:
            daemons.start("munged", "-F", "-f", f"--key-file={base}/munge.key",
                          f"--socket={base}/munge.socket", f"--pid-file={base}/munged.pid",
                          f"--log-file={base}/munged.log", f"--seed-file={base}/munged.seed")
            daemons.wait_ready((base / "munge.socket").exists, "munge socket")
            daemons.start("slurmctld", "-D", "-i")
            daemons.wait_ready(lambda: query(["sinfo", "-h"], env) is not None,
                               "slurmctld answer")
            yield daemons
        finally:
            _stop_cluster(daemons.procs, base, env)


def _node_states(env: dict[str, str]) -> dict[str, str]:
    """node name -> state (idle, alloc, down*...) as sinfo shows it."""
    listing = query(["sinfo", "-h", "-N", "-o", "%N %t"], env) or ""
    return dict(line.split() for line in listing.splitlines() if len(line.split()) == 2)


@contextmanager
def private_cluster(base: Path) -> Iterator[dict[str, str]]:
    """Run a one-node cluster under the empty folder ``base``; yields its environment
    (SLURM_CONF set); on exit cancels its jobs and stops every process it started."""
    (base / "spool").mkdir()
    env = _write_config(base, slurm_conf(base, socket.gethostname().split(".")[0]))
    with _controller(base, env) as daemons:
        daemons.start("slurmd", "-D")
        daemons.wait_ready(lambda: set(_node_states(env).values()) == {"idle"}, "idle node")
        yield env


# ---- a private two-node cluster: one network namespace per node -------------------------------
#
# Each slurmd runs in a network namespace (its own address on a bridge the test creates), a UTS
# namespace (its own hostname) and a mount namespace where a hosts file of the cluster is bound
# over /etc/hosts, so the node names resolve for slurmd and its jobs (``ip netns exec`` would
# remount /sys and hide the cgroup tree slurmd needs). munged and slurmctld run on this host
# and listen on the bridge's address. Every address is one the test created, on a private /24.

NODE_NAMES = ("cn01", "cn02")


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def two_node_skip_reason() -> str | None:
    """Why no two-node cluster can run here (no SLURM, not root, namespaces refused); None if it can."""
    if (reason := skip_reason()) is not None:
        return reason
    if any(shutil.which(tool) is None for tool in ("ip", "nsenter", "unshare")):
        return "the two-node SLURM cluster needs iproute2's ip and util-linux's nsenter, unshare"
    probe = f"mtprobe{os.getpid()}"
    refused = _ip("netns", "add", probe)
    if refused.returncode:
        return f"the kernel refuses network namespaces (ip netns add: {refused.stderr.strip()})"
    try:
        for step in (["link", "add", f"{probe}a", "type", "veth", "peer", "name", f"{probe}b"],
                     ["link", "set", f"{probe}b", "netns", probe]):
            if (failed := _ip(*step)).returncode:
                return f"no veth pair into a network namespace (ip {' '.join(step)}: " \
                       f"{failed.stderr.strip()})"
        inside = subprocess.run(["nsenter", f"--net=/run/netns/{probe}", "unshare", "--uts",
                                 "--mount", "true"],
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        if inside.returncode:
            return f"cannot enter a network + UTS namespace: {inside.stderr.strip()}"
    finally:
        _ip("link", "del", f"{probe}a")
        _ip("netns", "del", probe)
    return None


def _free_subnet() -> str:
    """A 10.x.y.0/24 no route or address of this host overlaps ("10.x.y")."""
    import ipaddress

    listed = _ip("-4", "-o", "route").stdout + _ip("-4", "-o", "addr").stdout
    taken = [ipaddress.ip_network(word, strict=False) for word in listed.split()
             if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", word)]
    for n in range(os.getpid(), os.getpid() + 5000):
        prefix = f"10.{200 + n % 50}.{n // 50 % 250}"
        subnet = ipaddress.ip_network(f"{prefix}.0/24")
        if not any(subnet.overlaps(net) for net in taken):
            return prefix
    raise AssertionError("no free 10.x.y.0/24 for the two-node cluster's bridge")


class TwoNodeCluster:
    """A running two-node cluster: its environment, nodes and addresses, and the faults the
    tests inject (a node killed, restarted, its tasks frozen)."""

    def __init__(self, base: Path, tag: str, prefix: str) -> None:
        self.base = base
        self.bridge = f"mtb{tag}"
        self.controller_addr = f"{prefix}.1"
        self.addresses = {name: f"{prefix}.{11 + i}" for i, name in enumerate(NODE_NAMES)}
        self.namespaces = {name: f"mt{tag}{name}" for name in NODE_NAMES}
        self.env: dict[str, str] = {}
        self.slurmd: dict[str, subprocess.Popen] = {}
        self.daemons: _Daemons | None = None

    # network -----------------------------------------------------------------------------------
    def create_network(self) -> None:
        """The bridge (controller address) and, per node, a namespace, a veth pair, /etc/hosts."""
        hosts = "".join(f"{addr} {name}\n" for name, addr in self.addresses.items())
        (self.base / "hosts").write_text(f"127.0.0.1 localhost\n{hosts}{self.controller_addr} "
                                         f"{socket.gethostname().split('.')[0]}\n")
        steps = [["link", "add", self.bridge, "type", "bridge"],
                 ["addr", "add", f"{self.controller_addr}/24", "dev", self.bridge],
                 ["link", "set", self.bridge, "up"]]
        for i, (name, ns) in enumerate(self.namespaces.items()):
            outside, inside = f"{self.bridge}v{i}", f"{self.bridge}p{i}"
            steps += [["netns", "add", ns],
                      ["link", "add", outside, "type", "veth", "peer", "name", inside],
                      ["link", "set", outside, "master", self.bridge],
                      ["link", "set", outside, "up"],
                      ["link", "set", inside, "netns", ns],
                      ["-n", ns, "addr", "add", f"{self.addresses[name]}/24", "dev", inside],
                      ["-n", ns, "link", "set", inside, "up"],
                      ["-n", ns, "link", "set", "lo", "up"]]
        for step in steps:
            done = _ip(*step)
            assert done.returncode == 0, f"ip {' '.join(step)}: {done.stderr.strip()}"

    def remove_network(self) -> None:
        """Kill what still runs in the namespaces, delete them and the bridge."""
        for name, ns in self.namespaces.items():
            self.kill_node(name)
            _ip("netns", "del", ns)
        _ip("link", "del", self.bridge)

    # nodes -------------------------------------------------------------------------------------
    def node_pids(self, name: str) -> list[int]:
        """Every process in the node's network namespace (slurmd, slurmstepd, its tasks)."""
        listed = _ip("netns", "pids", self.namespaces[name])
        return [int(pid) for pid in listed.stdout.split()] if listed.returncode == 0 else []

    def start_node(self, name: str) -> None:
        """Start the node's slurmd, in its namespaces, under its own hostname."""
        assert self.daemons is not None, "start_node needs the running controller"
        (self.base / f"spool-{name}").mkdir(exist_ok=True)
        self.slurmd[name] = self.daemons.start(
            "nsenter", f"--net=/run/netns/{self.namespaces[name]}", "unshare", "--uts", "--mount",
            "--", "sh", "-c", f"mount --bind {self.base}/hosts /etc/hosts && hostname {name} && "
            f"exec slurmd -D -N {name}")

    def kill_node(self, name: str) -> None:
        """SIGKILL the node: its slurmd and every step daemon and task on it."""
        signal_tree(self.node_pids(name), signal.SIGKILL)
        if name in self.slurmd:
            self.slurmd[name].wait(timeout=20)

    def signal_tasks(self, name: str, sig: int, match: bytes = b"megatron_telecom") -> list[int]:
        """Send ``sig`` to the node's Python processes whose command line contains ``match``
        (the job's tasks, not the srun that started them); their pids."""
        pids = []
        for pid in self.node_pids(name):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if Path(argv[0].decode()).name.startswith("python") and match in b" ".join(argv):
                    os.kill(pid, sig)
                    pids.append(pid)
            except OSError:
                continue
        return pids

    def node_states(self) -> dict[str, str]:
        """node name -> state (idle, alloc, mix, down*...) as sinfo shows it."""
        return _node_states(self.env)

    def wait_nodes(self, want: str = "idle", timeout: float = START_TIMEOUT_S) -> None:
        """Wait until every node shows state ``want`` in sinfo."""
        wait_for(lambda: list(self.node_states().values()) == [want] * len(NODE_NAMES),
                 timeout=timeout, what=f"both nodes {want}", poll=0.5,
                 details=lambda: f"{self.node_states()}\n{cluster_logs(self.base)}")


def _remove_stale_networks() -> None:
    """Namespaces and bridges an earlier, killed test session left (its pid is gone)."""
    for ns in _ip("netns", "list").stdout.split():
        if (m := re.fullmatch(r"mt(\d+)cn\d+", ns)) and not Path(f"/proc/{m[1]}").exists():
            _ip("netns", "del", ns)
    for link in re.findall(r"^\d+: (mtb\d+):", _ip("-o", "link").stdout, re.M):
        if not Path(f"/proc/{link[3:]}").exists():
            _ip("link", "del", link)


@contextmanager
def private_two_node_cluster(base: Path) -> Iterator[TwoNodeCluster]:
    """Run a two-node cluster (nodes cn01, cn02, 4 CPUs each) under the empty folder ``base``;
    on exit cancels its jobs, stops every process and removes the network it created."""
    _remove_stale_networks()
    tag = str(os.getpid())
    cluster = TwoNodeCluster(base, tag, _free_subnet())
    host = socket.gethostname().split(".")[0]
    # config_overrides: 4 CPUs and 8 GB per node whatever the machine has (a 4-task job fits
    # on one node; a 3-CPU job needs a node of its own); a node that stops answering is DOWN
    # after SlurmdTimeout and a requeued job is held for cred_expire (the node-loss test)
    cluster.env = _write_config(base, slurm_conf(
        base, host, controller_addr=cluster.controller_addr, nodes=cluster.addresses, cpus=4,
        memory_mb=8192, cred_expire=40,
        extra=("SlurmdParameters=config_overrides", "SlurmdTimeout=10")))
    try:
        cluster.create_network()
        with _controller(base, cluster.env) as cluster.daemons:
            for name in NODE_NAMES:
                cluster.start_node(name)
            cluster.wait_nodes()
            yield cluster
    finally:
        cluster.remove_network()


# ---- jobs ---------------------------------------------------------------------------------------

def submit(env: dict[str, str], *args: str) -> str:
    """``sbatch --parsable ARGS`` from the repository root; the job id."""
    proc = subprocess.run(["sbatch", "--parsable", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_fields(env: dict[str, str], job: str, attempts: int = 5) -> dict[str, str]:
    """``scontrol show job`` fields (JobState, Restarts, Reason, ExitCode...); {} once the
    controller has forgotten the job. A controller too busy to answer (timeout, socket error,
    as under four test workers) is asked again: only "Invalid job id" means gone."""
    failures = []
    for _ in range(attempts):
        try:
            proc = subprocess.run(["scontrol", "show", "job", "-o", job], env=env,
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failures.append(f"no answer in {COMMAND_TIMEOUT_S} s")
            continue
        if proc.returncode == 0:
            return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))
        if "Invalid job id" in proc.stderr:
            return {}
        failures.append(proc.stderr.strip())
        time.sleep(2)
    raise AssertionError(f"scontrol show job {job} failed {attempts} times: {failures}")


def log_tail(path: Path) -> str:
    """The end of a job's output file, for failure messages."""
    return path.read_text()[-4000:] if path.exists() else "(no output file yet)"


def wait_state(env: dict[str, str], job: str, state: str, timeout: float = 120) -> None:
    """Wait until SLURM shows ``job`` in ``state`` (RUNNING...)."""
    wait_for(lambda: job_fields(env, job).get("JobState") == state, timeout=timeout,
             what=f"job {job} to be {state}", poll=0.5, details=lambda: str(job_fields(env, job)))


def ended(env: dict[str, str], job: str, *, release: bool = True) -> dict[str, str] | None:
    """The job's fields once it has ended for good (JobState GONE once scontrol forgot it), else
    None; a requeued job held until its BeginTime is released now (``release``), to keep tests
    fast."""
    fields = job_fields(env, job) or {"JobState": "GONE"}
    if fields["JobState"] not in ACTIVE_STATES:
        return fields
    if release and fields["JobState"] == "PENDING" and fields.get("Reason") == "BeginTime":
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env,
                       capture_output=True, timeout=COMMAND_TIMEOUT_S)
    return None


def signal_when_training(env: dict[str, str], job: str, metrics: Path, log: Path) -> None:
    """Send ``job`` the time-limit signal (what ``--signal=USR1@300`` sends) once it has logged an
    iteration to its --log-metrics-file ``metrics``; fail with its output ``log`` if it ends first."""
    def training() -> bool:
        if metrics.exists() and read_jsonl(metrics):
            return True
        assert job_fields(env, job).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), \
            log_tail(log)
        return False

    wait_for(training, timeout=JOB_TIMEOUT_S, what=f"job {job} to log an iteration",
             details=lambda: log_tail(log))
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True, timeout=30)


def wait_done(env: dict[str, str], job: str, log: Path, timeout: float = JOB_TIMEOUT_S, *,
              release: bool = True) -> dict[str, str]:
    """The fields of ``job`` once it has ended; on timeout it is cancelled and the test fails
    with the tail of its output file ``log``. ``release``: see ``ended``."""
    try:
        return wait_for(lambda: ended(env, job, release=release), timeout=timeout,
                        what=f"job {job} to end",
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
