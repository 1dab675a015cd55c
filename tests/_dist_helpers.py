"""Helpers for multi-process tests: torchrun launches with timeouts, tiny token datasets.

Every launch runs the real code under gloo in subprocesses; a timeout turns a hang into a
failure. Other test files may import this module read-only. It holds the suite's one
``free_port``, its one polling loop (``wait_for``) and its one process-tree signaller
(``signal_tree``, under ``signal_job``/``kill_job``): other helpers build on these.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import _preloaded as preloaded
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 300
T = TypeVar("T")


_PORTS = random.Random()  # seeded from the OS: xdist workers and parallel sessions draw apart


def free_port() -> int:
    """A TCP port nobody listens on right now, drawn below the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` is an ephemeral one: between this check and the
    child's bind, an outgoing connection (gloo opens many) could take it ("address already in
    use", seen under xdist). Ports under the ephemeral range are only ever taken on purpose.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = _PORTS.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port found under {low}")


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the repo importable, one thread per process, quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", TOKENIZERS_PARALLELISM="false")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(extra)
    return env


def torchrun_cmd(nproc: int, module: str, args: list[str]) -> list[str]:
    """``python -m torch.distributed.run`` for ``nproc`` local processes running ``-m module``."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", module, *args]


def run_subprocess(cmd: list[str], *, env: dict[str, str], timeout: float,
                   cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(capture_output=True, text=True)`` that, on timeout, kills the whole job.

    The command runs in a session of its own; on timeout that process group and every
    descendant (torchrun's workers sit in sessions of their own) get SIGKILL, so a hung test
    leaves nothing busy on the CI cores. Raises subprocess.TimeoutExpired with the output.
    ``python SCRIPT|-m MODULE|-c CODE ...`` runs in a process from the preloaded interpreter
    (``_preloaded.py``); tests of imports or memory use ``subprocess`` directly.
    """
    if cmd[0] == sys.executable and len(cmd) > 1 and (cmd[1] in ("-m", "-c") or not cmd[1].startswith("-")):
        return _run_python([(cmd[1:], env)], cwd=cwd or Path.cwd(), timeout=timeout)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(proc, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def run_script_for_record(script: str, out: Path, *, timeout: float = 180) -> dict:
    """Run a test module as a fresh single-process script (`python script OUT`) and return the
    JSON record it writes: for checks that need a process of their own (the CPU shim is global)."""
    env = subprocess_env()
    env.pop("SLURM_PROCID", None)
    proc = run_ranks(1, [script, str(out)], env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


def _run_python(jobs: list[tuple[list[str], dict[str, str]]], *, cwd: Path, timeout: float,
                ) -> subprocess.CompletedProcess:
    """``python TARGET`` under ENV for each (TARGET, ENV) of ``jobs``, at once, to completion.

    The first process that fails ends the others (SIGKILL) and sets the return code; stdout and
    stderr are the processes' outputs one after the other. On timeout every process is killed
    and subprocess.TimeoutExpired carries the outputs.
    """
    with tempfile.TemporaryDirectory(prefix="python") as logs:
        procs = [preloaded.start(target, env=env, cwd=cwd, stdout=Path(logs, f"{i}.out"),
                                 stderr=Path(logs, f"{i}.err")) for i, (target, env) in enumerate(jobs)]
        deadline, code, timed_out = time.monotonic() + timeout, 0, False
        while True:
            codes = [p.poll() for p in procs]
            code = next((c for c in codes if c), 0)  # the first failure (negative: a signal)
            if code or all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.05)
        for proc in procs:
            if proc.poll() is None:
                kill_job(proc)
        stdout, stderr = ("".join(Path(logs, f"{i}.{kind}").read_text(errors="replace")
                                  for i in range(len(jobs))) for kind in ("out", "err"))
    command = [sys.executable, *jobs[0][0]]
    if timed_out:
        raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(command, code, stdout, stderr)


def run_ranks(nproc: int, target: list[str], *, timeout: float, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess:
    """``python TARGET`` as ``nproc`` local ranks with the variables torchrun gives its workers,
    without the launcher (``_run_python``: as under torchrun, the first rank that fails ends the
    others; the outputs come in rank order)."""
    base, port = env if env is not None else subprocess_env(), str(free_port())
    return _run_python([(target, {**base, "RANK": str(rank), "LOCAL_RANK": str(rank),
                                  "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
                                  "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
                         for rank in range(nproc)], cwd=REPO, timeout=timeout)


def run_torchrun(nproc: int, args: list[str], *, module: str = "megatron_telecom.pretrain",
                 timeout: float = DEFAULT_TIMEOUT_S, check: bool = True,
                 ) -> subprocess.CompletedProcess:
    """Run ``-m module`` as ``nproc`` ranks to completion (``run_ranks``); on failure (or
    timeout) the assertion shows the output's tail."""
    try:
        proc = run_ranks(nproc, ["-m", module, *args], timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"torchrun timed out after {timeout}s: {args}\n"
                             f"{(err.stdout or '')[-2000:]}\n{(err.stderr or '')[-4000:]}") from err
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun exited {proc.returncode}: {args}\n"
                             f"--- stdout ---\n{proc.stdout[-4000:]}\n"
                             f"--- stderr ---\n{proc.stderr[-6000:]}")
    return proc


def start_torchrun(nproc: int, args: list[str], log_path: Path,
                   *, module: str = "megatron_telecom.pretrain") -> subprocess.Popen:
    """Start a launch in its own session (so the whole job can be signalled), output to a file."""
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(torchrun_cmd(nproc, module, args), env=subprocess_env(),
                                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)


def start_ranks(nproc: int, args: list[str], log_dir: Path,
                *, module: str = "megatron_telecom.pretrain") -> list[preloaded.Process]:
    """Start ``nproc`` processes with torchrun's variables set, as srun starts SLURM tasks, each
    in a session of its own, output in ``log_dir/rank{N}.log`` (processes from ``_preloaded``).

    Used where a test signals or kills every task itself (SLURM delivers SIGTERM to each task).
    """
    port = str(free_port())
    return [preloaded.start(["-m", module, *args], cwd=REPO, stdout=log_dir / f"rank{rank}.log",
                            stderr=log_dir / f"rank{rank}.log",
                            env=subprocess_env(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                                               MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
            for rank in range(nproc)]


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, poll: float = 0.2,
             details: Callable[[], str] | None = None) -> T:
    """Poll until ``predicate()`` is truthy and return that value; AssertionError naming ``what``
    (and ``details()``, e.g. a log tail) on timeout. The predicate may raise to stop early."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = f":\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(poll)


def signal_tree(pids: Iterable[int], sig: int, *, process_groups: bool = False) -> list:
    """Send ``sig`` to the processes ``pids`` and all their descendants, and with
    ``process_groups`` to the groups they lead; returns the psutil handles signalled.

    The tree is read before any signal, so a killed parent cannot hide its children.
    """
    import psutil

    tree: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree.update((p.pid, p) for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    for pid in pids if process_groups else ():
        try:
            os.killpg(pid, sig)  # the group of a process started with start_new_session
        except (ProcessLookupError, PermissionError):
            pass
    for process in tree.values():
        try:
            process.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    return list(tree.values())


def signal_job(proc: subprocess.Popen, sig: int) -> list:
    """Send ``sig`` to ``proc``'s process group and every descendant (as SLURM signals every
    process of a task, DataLoader workers included); returns the processes signalled."""
    return signal_tree([proc.pid], sig, process_groups=True)


def kill_job(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a job started in its own session: the launcher and all its workers, then reap.

    torchrun starts each worker in a session of its own, so the process tree is walked.
    """
    import psutil

    tree = signal_job(proc, sig)
    proc.wait(timeout=60)
    psutil.wait_procs([p for p in tree if p.pid != proc.pid], timeout=60)


def freeze_job_when(proc: subprocess.Popen, predicate: Callable[[], object], *, timeout: float,
                    what: str, poll: float = 0.005) -> None:
    """Poll until ``predicate()``, then SIGSTOP the whole job so the state it saw stays put
    (the caller then kills it); AssertionError naming ``what`` on timeout or early exit."""
    def seen() -> object:
        if result := predicate():
            return result
        if proc.poll() is not None:
            raise AssertionError(f"the job exited ({proc.returncode}) before {what}")
        return False

    wait_for(seen, timeout=timeout, what=what, poll=poll)
    signal_job(proc, signal.SIGSTOP)


def write_token_dataset(prefix: Path, *, num_docs: int = 200, vocab_size: int = 511,
                        seed: int = 0, min_len: int = 20, max_len: int = 150) -> Path:
    """A Megatron indexed dataset of learnable synthetic documents (arithmetic token runs).

    Each document repeats ``t -> t + step`` (mod vocab) from a random start, ending with the
    NullTokenizer's EOD (= vocab_size), so a model's loss can fall well below log(vocab).
    """
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for _ in range(num_docs):
        length = int(rng.integers(min_len, max_len))
        start, step = int(rng.integers(0, vocab_size)), int(rng.integers(1, 4))
        tokens = (start + step * np.arange(length)) % vocab_size
        doc = np.append(tokens, vocab_size).astype(np.int64)
        builder.add_document(torch.from_numpy(doc), [len(doc)])
    builder.finalize(f"{prefix}.idx")
    return prefix


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file (the trainer's --log-metrics-file)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def train_losses(path: Path) -> dict[int, float]:
    """iteration -> exact training loss from a --log-metrics-file."""
    return {r["iteration"]: r["lm_loss"] for r in read_jsonl(path) if "lm_loss" in r}


def tiny_train_args(data_prefix: Path, *, cache: Path, train_iters: int, **flags: object) -> list[str]:
    """Flags for a tiny run on a synthetic dataset (NullTokenizer, 4 layers, hidden 64, seq 64).

    ``flags`` add or override flags: ``tensor_model_parallel_size=2`` -> --tensor-model-parallel-size 2;
    True -> a bare flag; None drops the flag.
    """
    base: dict[str, object] = {
        "model": "tiny", "num_layers": 4, "seq_length": 64,
        "tokenizer_type": "NullTokenizer", "vocab_size": 511,  # 512 ids: same padding at TP 1/2
        "data_path": str(data_prefix), "split": "90,10,0", "data_cache_path": str(cache),
        "micro_batch_size": 2, "global_batch_size": 8, "train_iters": train_iters,
        "lr": 3e-3, "min_lr": 3e-4, "lr_warmup_iters": 1, "lr_decay_style": "cosine",
        "log_interval": 1, "eval_interval": 0, "seed": 1234,
    }
    base.update(flags)
    argv: list[str] = []
    for key, value in base.items():
        if value is None or value is False:
            continue
        argv.append("--" + key.replace("_", "-"))
        if value is not True:
            argv.extend(str(value).split())
    return argv


def checkpoint_tensors(checkpoint: Path) -> dict:
    """Every tensor of a torch_dist checkpoint folder (model, optimizer), read without processes."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    flat = checkpoint.parent / (checkpoint.name + ".pt")
    dcp_to_torch_save(str(checkpoint), str(flat))
    state = torch.load(flat, weights_only=False)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def kill_and_resume(nproc: int, args_of: Callable[[str], list[str]], root: Path, *, iters: int,
                    first_save: int) -> tuple[dict[int, float], dict[int, float]]:
    """Run "a" to the end; run "b" SIGKILLed once it saved iteration ``first_save`` or later, then
    resumed from its checkpoint. (losses of a, losses of b after the resume); ``args_of(name)``
    gives a run's flags with --save root/name and --log-metrics-file root/name.jsonl."""
    from megatron_telecom.models.checkpoint_format import read_tracker

    run_torchrun(nproc, args_of("a"))
    losses_a = train_losses(root / "a.jsonl")
    assert sorted(losses_a) == list(range(1, iters + 1))
    (root / "b_logs").mkdir()
    ranks = start_ranks(nproc, args_of("b"), root / "b_logs")
    try:
        wait_for(lambda: (read_tracker(root / "b") or 0) >= first_save, timeout=240,
                 what="run B's first checkpoint")
    finally:
        signal_tree([rank.pid for rank in ranks], signal.SIGKILL, process_groups=True)
        for rank in ranks:
            rank.wait(timeout=60)
    resumed_at = read_tracker(root / "b")
    assert first_save <= resumed_at < iters, f"run B was not killed before its end ({resumed_at})"
    (root / "b.jsonl").write_text("")
    run_torchrun(nproc, [*args_of("b"), "--load", str(root / "b")])
    losses_b = train_losses(root / "b.jsonl")
    assert sorted(losses_b) == list(range(resumed_at + 1, iters + 1))
    return losses_a, losses_b
