"""Shared pytest fixtures: area fixtures carry their area's prefix; `slurm_cluster` is shared."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# ---- curation_ fixtures (tests/test_curation*.py) -------------------------------------------

CURATION_RFC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "rfc"


@pytest.fixture(scope="session")
def curation_rfc_dir() -> Path:
    """The 80 real IETF RFCs beside the repository (skip when absent)."""
    if not any(CURATION_RFC_DIR.glob("rfc*.txt")):
        pytest.skip(f"real RFC corpus not found at {CURATION_RFC_DIR} (../shared/data/rfc)")
    return CURATION_RFC_DIR


def _curation_build_spec_docx() -> bytes:
    """A 3GPP-style TS: cover, copyright page, contents, foreword, clauses, table, annexes."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    for name in ("ZA", "ZB", "ZT", "TT", "TOC 1", "TOC 2", "B1"):
        document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    document.add_paragraph("3GPP TS 23.501 V18.5.0 (2024-03)", style="ZA")
    document.add_paragraph("Technical Specification", style="ZB")
    document.add_paragraph(
        "3rd Generation Partnership Project; Technical Specification Group Services and "
        "System Aspects; System architecture for the 5G System (5GS); Stage 2", style="ZT")
    document.add_paragraph("Postal address: 3GPP support office, 650 Route des Lucioles")
    document.add_paragraph("Copyright Notification: No part may be reproduced.")
    document.add_paragraph("Contents", style="TT")
    document.add_paragraph("Foreword\t5", style="TOC 1")
    document.add_paragraph("1\tScope\t6", style="TOC 1")
    document.add_paragraph("4.2\tArchitecture reference model\t7", style="TOC 2")
    document.add_heading("Foreword", level=1)
    document.add_paragraph("This Technical Specification has been produced by the 3GPP.")
    document.add_heading("1\tScope", level=1)
    document.add_paragraph("The present document defines the Stage 2 system architecture for "
                           "the 5G System, including the AMF, SMF and UPF network functions.")
    document.add_heading("4\tArchitecture model and concepts", level=1)
    document.add_heading("4.2\tArchitecture reference model", level=2)
    document.add_paragraph("The UE reaches the 5G core network over the NG-RAN.")
    document.add_paragraph("the AMF terminates N1 NAS signalling;", style="B1")
    document.add_heading("4.2.1\tService-based interfaces", level=3)
    table = document.add_table(rows=3, cols=2)
    for row, (a, b) in zip(table.rows, [("NF", "Interface"), ("AMF", "Namf"), ("SMF", "Nsmf|x")]):
        row.cells[0].text, row.cells[1].text = a, b
    document.add_paragraph("Each network function exposes its services over the SBI.")
    document.add_heading("Annex A (normative):\tQoS parameters", level=8)
    document.add_paragraph("The 5QI value selects the QoS characteristics of a QoS flow.")
    document.add_heading("Annex B (informative):\tChange history", level=8)
    history = document.add_table(rows=2, cols=3)
    for row, values in zip(history.rows, [("Date", "CR", "Subject"), ("2024-03", "1234", "Fix")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_paragraph("Editorial change history entry.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


CURATION_SPEC_MARKDOWN = """# 1 Scope

The present document defines the Stage 2 system architecture for the 5G System, including the AMF, SMF and UPF network functions.

# 4 Architecture model and concepts

## 4.2 Architecture reference model

The UE reaches the 5G core network over the NG-RAN.

- the AMF terminates N1 NAS signalling;

### 4.2.1 Service-based interfaces

| NF | Interface |
|---|---|
| AMF | Namf |
| SMF | Nsmf\\|x |

Each network function exposes its services over the SBI.

# Annex A (normative): QoS parameters

The 5QI value selects the QoS characteristics of a QoS flow."""


@pytest.fixture(scope="session")
def curation_spec_docx() -> bytes:
    """Bytes of a 3GPP-style .docx (see CURATION_SPEC_MARKDOWN for its expected conversion)."""
    return _curation_build_spec_docx()


@pytest.fixture(scope="session")
def curation_spec_markdown() -> str:
    """The Markdown that `curation_spec_docx` must convert to."""
    return CURATION_SPEC_MARKDOWN


# ---- slurm_cluster: a private one-node SLURM cluster (tests/test_*_slurm.py) ------------------

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun", "scancel")
_SLURM_COMMAND_TIMEOUT = 30  # seconds for one sinfo/squeue/scancel call
_SLURM_START_TIMEOUT = 90  # seconds for munged + slurmctld + slurmd to reach an idle node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(base: Path, host: str) -> str:
    return "\n".join([
        "ClusterName=telecomtest", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}", "AuthType=auth/munge", "CredType=cred/munge",
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


def _slurm_query(command: list[str], env: dict[str, str]) -> str | None:
    """stdout of a SLURM client command on the private cluster; None if it failed or hung."""
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=_SLURM_COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _slurm_logs(base: Path) -> str:
    names = ("munged.log", "slurmctld.log", "slurmd.log", "daemons.out")
    return "".join(f"== {name}\n{(base / name).read_text(errors='replace')[-2000:]}\n"
                   for name in names if (base / name).exists())


def _wait_until(
    ready: Callable[[], bool], what: str, base: Path, daemons: list[subprocess.Popen]
) -> None:
    """Poll `ready` until it holds; fail with the daemons' logs on timeout or a daemon's death."""
    deadline = time.monotonic() + _SLURM_START_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        dead = [d.args[0] for d in daemons if d.poll() is not None]
        if dead:
            pytest.fail(f"private SLURM cluster: {dead} exited before {what}:\n{_slurm_logs(base)}")
        time.sleep(0.5)
    pytest.fail(f"private SLURM cluster: no {what} after {_SLURM_START_TIMEOUT}s:\n{_slurm_logs(base)}")


def _descendants(roots: set[int]) -> set[int]:
    """`roots` and every process below them (parent pids read from /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid"
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _reap_step_daemons(base: Path) -> None:
    """SIGKILL this cluster's slurmstepd processes and the job processes below them.

    They are found by their open files under `base`; slurmstepd ignores SIGTERM once slurmd is gone.
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
    for pid in _descendants(steps):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop_slurm_cluster(daemons: list[subprocess.Popen], base: Path, env: dict[str, str]) -> None:
    """Cancel leftover jobs, stop the daemons (SIGTERM, then SIGKILL), kill stray step daemons."""
    if len(daemons) == 3 and _slurm_query(["scancel", "--user", "root"], env) is not None:
        deadline = time.monotonic() + 20  # let slurmd end the cancelled jobs' steps itself
        while _slurm_query(["squeue", "-h"], env) and time.monotonic() < deadline:
            time.sleep(0.5)
    for daemon in reversed(daemons):
        daemon.terminate()
    for daemon in reversed(daemons):
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=20)
    _reap_step_daemons(base)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment (SLURM_CONF set) of a running private one-node SLURM cluster (copy to change).

    munged, slurmctld and slurmd run with a config, ports and a munge socket under a temporary
    folder, so the fixture neither needs nor disturbs a system cluster. Skips without root or
    the Debian packages slurmctld, slurmd, slurm-client and munge (tests/run.sh installs them).
    """
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM/munge binaries missing ({', '.join(missing)}): apt-get install "
                    "slurmctld slurmd slurm-client munge (tests/run.sh does, as root)")
    if os.geteuid() != 0:
        pytest.skip("the private SLURM cluster runs munged/slurmctld/slurmd as root; run as root")
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (base / sub).mkdir()
    (base / "munge.key").write_bytes(os.urandom(1024))
    (base / "munge.key").chmod(0o400)
    (base / "slurm.conf").write_text(_slurm_conf(base, socket.gethostname().split(".")[0]))
    env = {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}
    daemons: list[subprocess.Popen] = []
    with open(base / "daemons.out", "ab") as out:
        def start(*command: str) -> None:
            daemons.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))

        try:
            start("munged", "-F", "-f", f"--key-file={base}/munge.key",
                  f"--socket={base}/munge.socket", f"--pid-file={base}/munged.pid",
                  f"--log-file={base}/munged.log", f"--seed-file={base}/munged.seed")
            _wait_until((base / "munge.socket").exists, "munge socket", base, daemons)
            start("slurmctld", "-D", "-i")
            _wait_until(lambda: _slurm_query(["sinfo", "-h"], env) is not None, "slurmctld answer",
                        base, daemons)
            start("slurmd", "-D")
            _wait_until(lambda: (_slurm_query(["sinfo", "-h", "-o", "%t"], env) or "")
                        .startswith("idle"), "idle node", base, daemons)
            yield env
        finally:
            _stop_slurm_cluster(daemons, base, env)


# ---- evaluation_ fixtures (tests/test_evaluation_*.py, tests/test_generate*.py) --------------



@pytest.fixture(scope="session")
def evaluation_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama HF folder with the real SmolLM2 tokenizer (fast real forwards)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from megatron_telecom.convert.bundled import resolve_hf_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_hf_path("bundled:smollm2-135m"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so scores differ between options
        for param in model.parameters():
            param.mul_(8.0)
    path = tmp_path_factory.mktemp("evaluation") / "tiny-llama"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def evaluation_teleqna_fixture(tmp_path_factory) -> Path:
    """Our TeleQnA-format sample: 3 questions per category, 2-5 options, 2 malformed records."""
    from _teleqna_records import RECORDS

    path = tmp_path_factory.mktemp("teleqna") / "teleqna_sample.json"
    path.write_text(json.dumps(RECORDS, indent=1), encoding="utf-8")
    return path


# ---- convert_ fixtures (tests/test_convert*.py) ---------------------------------------------


@pytest.fixture(scope="session")
def convert_hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random HF models, one per Llama-family variant (see _convert_helpers.TINY_VARIANTS)."""
    from _convert_helpers import TINY_VARIANTS, write_tiny_hf_model

    base = tmp_path_factory.mktemp("convert_hf")
    return {name: write_tiny_hf_model(base / name, name) for name in TINY_VARIANTS}


@pytest.fixture(scope="session")
def convert_checkpoints(convert_hf_models: dict[str, Path],
                        tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny HF model converted by hf-to-mcore (one subprocess: the CPU shim is global)."""
    import json
    import sys

    from _dist_helpers import REPO, run_subprocess, subprocess_env

    base = tmp_path_factory.mktemp("convert_mcore")
    jobs = {name: str(base / name) for name in convert_hf_models}
    script = ("import json, sys\nfrom megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore\n"
              "for hf, save in json.loads(sys.argv[1]):\n    convert_hf_to_mcore(hf, save)\n")
    pairs = [(str(convert_hf_models[name]), save) for name, save in jobs.items()]
    proc = run_subprocess([sys.executable, "-c", script, json.dumps(pairs)], env=subprocess_env(),
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return {name: Path(save) for name, save in jobs.items()}
