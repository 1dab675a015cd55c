"""Test processes forked from an interpreter that has already imported torch and megatron-core.

A trainer or probe process spends ~3.5 of its ~5 CPU-seconds importing torch, megatron-core and
transformers; the suite starts hundreds of them. ``start`` runs ``python TARGET`` (a script,
``-m module`` or ``-c code``) in a new process forked from multiprocessing's fork server, which imported the
PRELOAD modules once per pytest worker. The child then becomes what a new interpreter would be:
its own session, its stdout/stderr in files, the given environment, working directory, argv and
sys.path, and a fresh numpy seed; the target runs as ``__main__``. Exit codes follow Python's
(SystemExit, 1 for an uncaught exception, -N for signal N); atexit handlers run at the end.

What a fork cannot give: a string hash seed of its own per process, and the import-time side
effects of the PRELOAD modules happen before the environment is set. So only third-party modules
and our package root are preloaded (``megatron_telecom`` must come first: it chooses the JIT
fuser before megatron-core imports), never our modules with import-time state (signals.py's
process start time). Tests of launching itself (torchrun, srun, signals, memory peaks, import
lightness) keep real processes. ``MEGATRON_TELECOM_TEST_FRESH=1`` runs every such process as a
new interpreter instead, to check that nothing depends on the preloading.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import types
from pathlib import Path

PRELOAD = ["megatron_telecom", "numpy", "torch", "torch.distributed", "torch.optim",
           "torch.distributed.checkpoint", "megatron.core", "megatron.core.models.gpt",
           "megatron.core.optimizer", "megatron.core.dist_checkpointing", "megatron.core.pipeline_parallel",
           "transformers", "safetensors", "tokenizers"]
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                  "MASTER_PORT")
FRESH = os.environ.get("MEGATRON_TELECOM_TEST_FRESH") == "1"

_context: multiprocessing.context.ForkServerContext | None = None
_fresh_paths: dict[str, list[str]] = {}


def _fresh_path_tail(env: dict[str, str]) -> list[str]:
    """sys.path[1:] of a new interpreter under ``env`` (PYTHONPATH, then the venv's paths)."""
    key = env.get("PYTHONPATH", "")
    if key not in _fresh_paths:
        out = subprocess.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.path[1:]))"],
                             env=env, capture_output=True, text=True, check=True, timeout=60).stdout
        _fresh_paths[key] = json.loads(out)
    return _fresh_paths[key]


def _server(env: dict[str, str]) -> multiprocessing.context.ForkServerContext:
    """The fork server, started once per pytest process under ``env`` (one OpenMP thread...) less
    any rank's variables."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update({k: v for k, v in env.items() if k not in RANK_VARIABLES})
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        _context = context
    return _context


def _become(target: list[str], env: dict[str, str], cwd: str, path: list[str], out: str, err: str) -> None:
    """In the forked child: the process ``python TARGET`` would be, then run TARGET as __main__."""
    os.setsid()
    for fd, name in ((1, out), (2, err)):
        opened = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    import numpy as np

    np.random.seed()  # a new interpreter's global numpy state comes from the OS
    try:
        if target[0] == "-m":
            sys.argv, sys.path[:] = ["-m", *target[2:]], [cwd, *path]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        elif target[0] == "-c":
            sys.argv, sys.path[:] = ["-c", *target[2:]], ["", *path]
            main = sys.modules["__main__"] = types.ModuleType("__main__")
            exec(compile(target[1], "<string>", "exec"), main.__dict__)
        else:
            script = str(Path(cwd, target[0]))
            sys.argv, sys.path[:] = [target[0], *target[1:]], [str(Path(script).parent), *path]
            runpy.run_path(script, run_name="__main__")
    finally:
        atexit._run_exitfuncs()


class PreloadedProcess:
    """The part of subprocess.Popen that the helpers use, for a process from the fork server."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process, self.pid = process, process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        return self._process.exitcode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode


Process = PreloadedProcess | subprocess.Popen  # what ``start`` gives


def start(target: list[str], *, env: dict[str, str], cwd: Path, stdout: Path, stderr: Path) -> Process:
    """Start ``python TARGET`` (``SCRIPT ARGS``, ``-m MODULE ARGS`` or ``-c CODE ARGS``), its output
    appended to the two files (a new interpreter under MEGATRON_TELECOM_TEST_FRESH=1)."""
    stdout.touch(), stderr.touch()
    if FRESH:
        with open(stdout, "a") as out, open(stderr, "a") as err:
            return subprocess.Popen([sys.executable, *target], cwd=cwd, env=env, stdout=out, stderr=err,
                                    start_new_session=True)
    process = _server(env).Process(target=_become, args=(
        target, env, str(cwd), _fresh_path_tail(env), str(stdout), str(stderr)))
    process.start()
    return PreloadedProcess(process)
