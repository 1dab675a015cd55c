"""Distributed bring-up: launcher detection (torchrun, SLURM), process group, megatron groups.

The same call starts a 2-process CPU test under torchrun (gloo, CPU shim) and a multi-node
SLURM job on GPUs (nccl, one process per GPU). Under SLURM everything comes from the
allocation: rank (SLURM_PROCID), node (SLURM_NODEID, SLURMD_NODENAME), tasks per node and the
master (the step's first node); the ranks meet there (runtime/rendezvous.py) within
$RENDEZVOUS_TIMEOUT seconds (default: the collective timeout).
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist

from megatron_telecom.runtime.cpu_shim import install_cpu_shim
from megatron_telecom.runtime.parallel_layout import ParallelLayout
from megatron_telecom.runtime.rendezvous import expand_tasks_per_node, rendezvous

__all__ = [
    "DistributedEnv",
    "destroy_distributed",
    "detect_distributed_env",
    "expand_slurm_hostlist",
    "get_device",
    "initialize_distributed",
    "job_env",
    "rendezvous_timeout_s",
    "set_random_seed",
]

DEFAULT_MASTER_PORT = 29500
Launcher = Literal["torchrun", "slurm", "single"]


@dataclass(frozen=True, kw_only=True)
class DistributedEnv:
    """Where this process sits in the job, as read from the launcher's environment."""

    rank: int
    """Global rank of this process."""
    world_size: int
    """Number of processes in the job."""
    local_rank: int
    """Rank on this node (selects the GPU)."""
    master_addr: str
    """Host of rank 0, where the rendezvous store listens."""
    master_port: int
    """Port of the rendezvous store."""
    launcher: Launcher
    """Who started the process: torchrun, SLURM (srun) or nobody (single process)."""
    node_rank: int = 0
    """Index of this process's node in the job (SLURM_NODEID; torchrun's GROUP_RANK)."""
    num_nodes: int = 1
    """Number of nodes the processes run on."""
    tasks_per_node: int = 1
    """Processes on this node (SLURM_STEP_TASKS_PER_NODE; torchrun's LOCAL_WORLD_SIZE)."""
    node: str = ""
    """Name of this process's node (SLURMD_NODENAME); empty outside SLURM."""
    nodes: tuple[str, ...] = ()
    """The SLURM step's nodes in order (the first hosts rank 0); empty outside SLURM."""


def _int_var(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    """The integer environment variable `name`; `default` when unset (KeyError without one)."""
    if default is not None and name not in environ:
        return default
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def _expand_range_list(body: str, hostlist: str) -> list[str]:
    """Expand "001-003,007" into ["001", "002", "003", "007"], keeping zero padding."""
    out: list[str] = []
    for part in body.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None:
            raise ValueError(f"cannot parse range {part!r} in SLURM host list {hostlist!r}")
        start, end = match.group(1), match.group(2) or match.group(1)
        if int(end) < int(start):
            raise ValueError(f"descending range {part!r} in SLURM host list {hostlist!r}")
        width = len(start)
        out.extend(str(i).zfill(width) for i in range(int(start), int(end) + 1))
    return out


def _split_top_level(hostlist: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    items, depth, current = [], 0, []
    for char in hostlist:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in SLURM host list {hostlist!r}")
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"unbalanced '[' in SLURM host list {hostlist!r}")
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def expand_slurm_hostlist(hostlist: str) -> list[str]:
    """Expand SLURM's compressed host list ("gpu[001-003,007],login1") like scontrol would.

    Several bracket groups in one name ("rack[1-2]-node[01-02]") expand as a product.
    """
    hosts: list[str] = []
    for item in _split_top_level(hostlist):
        expanded = [""]
        for literal, body in re.findall(r"([^\[\]]*)(?:\[([^\[\]]*)\])?", item):
            choices = _expand_range_list(body, hostlist) if body else [""]
            expanded = [prefix + literal + choice for prefix in expanded for choice in choices]
        hosts.extend(expanded)
    if not hosts:
        raise ValueError(f"empty SLURM host list {hostlist!r}")
    return hosts


def _slurm_master_port(environ: Mapping[str, str]) -> int:
    """MASTER_PORT when set, else a port derived from the job id so concurrent jobs differ."""
    if "MASTER_PORT" not in environ and "SLURM_JOB_ID" in environ:
        return 10000 + _int_var(environ, "SLURM_JOB_ID") % 50000
    return _int_var(environ, "MASTER_PORT", DEFAULT_MASTER_PORT)


def _slurm_tasks_on_node(environ: Mapping[str, str], node_rank: int, num_nodes: int) -> int:
    """Tasks on node ``node_rank`` from SLURM's per-node counts ("2(x2)"); 1 if not given."""
    value = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    counts = expand_tasks_per_node(value) if value else []
    return counts[node_rank] if len(counts) == num_nodes else 1


def _detect_slurm(environ: Mapping[str, str]) -> DistributedEnv:
    # the step's nodes (srun's SLURM_STEP_NODELIST): its first node runs rank 0
    nodelist = (environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
                or environ.get("SLURM_NODELIST"))
    nodes = tuple(expand_slurm_hostlist(nodelist)) if nodelist else ()
    if "MASTER_ADDR" in environ:
        master_addr = environ["MASTER_ADDR"]
    elif nodes:
        master_addr = nodes[0]
    else:
        raise ValueError(
            "SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST/SLURM_NODELIST "
            "is: launch with srun inside an allocation, or export MASTER_ADDR"
        )
    node_rank = _int_var(environ, "SLURM_NODEID", 0)
    num_nodes = max(len(nodes), 1)
    if node_rank >= num_nodes:
        raise ValueError(f"SLURM_NODEID={node_rank} is outside the node list {nodelist!r}")
    return DistributedEnv(
        rank=_int_var(environ, "SLURM_PROCID"),
        world_size=_int_var(environ, "SLURM_NTASKS", 1),
        local_rank=_int_var(environ, "SLURM_LOCALID", 0),
        master_addr=master_addr,
        master_port=_slurm_master_port(environ),
        launcher="slurm",
        node_rank=node_rank,
        num_nodes=num_nodes,
        tasks_per_node=_slurm_tasks_on_node(environ, node_rank, num_nodes),
        node=environ.get("SLURMD_NODENAME") or (nodes[node_rank] if nodes else ""),
        nodes=nodes,
    )


def detect_distributed_env(environ: Mapping[str, str] | None = None) -> DistributedEnv:
    """Read rank/world size/master from torchrun variables, else SLURM's, else single process."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ and "WORLD_SIZE" in environ:
        env = DistributedEnv(
            rank=_int_var(environ, "RANK"),
            world_size=_int_var(environ, "WORLD_SIZE"),
            local_rank=_int_var(environ, "LOCAL_RANK", 0),
            master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=_int_var(environ, "MASTER_PORT", DEFAULT_MASTER_PORT),
            launcher="torchrun",
            node_rank=_int_var(environ, "GROUP_RANK", 0),
            num_nodes=_int_var(environ, "GROUP_WORLD_SIZE", 1),
            tasks_per_node=_int_var(environ, "LOCAL_WORLD_SIZE", 1),
        )
    elif "SLURM_PROCID" in environ:
        env = _detect_slurm(environ)
    else:
        env = DistributedEnv(
            rank=0,
            world_size=1,
            local_rank=0,
            master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=_int_var(environ, "MASTER_PORT", DEFAULT_MASTER_PORT),
            launcher="single",
        )
    if not 0 <= env.rank < env.world_size:
        raise ValueError(f"rank {env.rank} is outside world size {env.world_size}")
    return env


def get_device() -> torch.device:
    """The device this process computes on: its GPU (cuda:LOCAL_RANK) or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def set_random_seed(seed: int) -> None:
    """Seed python, numpy, torch and megatron's model-parallel RNG tracker (Megatron-LM's way).

    Each pipeline stage gets seed + 100 * pp_rank; the tracker derives the TP-rank streams.
    """
    from megatron.core import parallel_state, tensor_parallel

    seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def rendezvous_timeout_s(environ: Mapping[str, str], timeout_minutes: int) -> float:
    """$RENDEZVOUS_TIMEOUT (seconds) when set, else the collective timeout."""
    value = environ.get("RENDEZVOUS_TIMEOUT")
    if value is None:
        return 60.0 * timeout_minutes
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(f"RENDEZVOUS_TIMEOUT={value!r} must be a positive number of seconds")
    return seconds


def _init_process_group(env: DistributedEnv, timeout_minutes: int) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    os.environ.update(
        RANK=str(env.rank),
        WORLD_SIZE=str(env.world_size),
        LOCAL_RANK=str(env.local_rank),
        MASTER_ADDR=env.master_addr,
        MASTER_PORT=str(env.master_port),
    )
    timeout = timedelta(minutes=timeout_minutes)
    # torchrun and single processes: env:// (torchrun's agent store is reused); SLURM tasks meet
    # at rank 0's store, with a clear error when a rank never joins
    store = None
    if env.launcher == "slurm":
        store = rendezvous(env.master_addr, env.master_port, rank=env.rank,
                           world_size=env.world_size, node=env.node or socket.gethostname(),
                           nodes=list(env.nodes),
                           timeout_s=rendezvous_timeout_s(os.environ, timeout_minutes),
                           collective_timeout=timeout)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        init_method=None if store else "env://",
        store=store,
        rank=env.rank,
        world_size=env.world_size,
        timeout=timeout,
    )


def job_env() -> DistributedEnv:
    """This process's place in the job: the running process group's, else the launcher's."""
    env = detect_distributed_env()
    if dist.is_initialized():
        env = replace(env, rank=dist.get_rank(), world_size=dist.get_world_size())
    return env


def _initialize_rerun_state_machine_quietly() -> None:
    """Create megatron-core's rerun state machine (disabled, as its schedules would) without
    its two WARNING lines ("Implicit initialization ...", "... initialized in mode ...")."""
    from megatron.core import rerun_state_machine

    logger = logging.getLogger(rerun_state_machine.__name__)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        rerun_state_machine.get_rerun_state_machine()
    finally:
        logger.setLevel(level)


def initialize_distributed(
    layout: ParallelLayout | None = None,
    *,
    seed: int = 1234,
    timeout_minutes: int = 10,
) -> DistributedEnv:
    """Start torch.distributed (nccl on GPU, gloo + CPU shim on CPU) and megatron's groups.

    ``layout`` (checked by ``compute_parallel_layout``) gives TP/PP/VPP; None is TP=PP=1.
    Reuses an existing default process group. Seeds every RNG with ``set_random_seed(seed)``.
    """
    install_cpu_shim()  # no-op when CUDA is present
    env = job_env()
    if layout is not None and layout.world_size != env.world_size:
        raise ValueError(f"the parallel layout was computed for {layout.world_size} processes but "
                         f"this job has {env.world_size}: compute it from job_env().world_size")
    if not dist.is_initialized():
        _init_process_group(env, timeout_minutes)
    tp = layout.tensor_model_parallel_size if layout else 1
    if env.rank == 0 and env.num_nodes > 1 and env.tasks_per_node % tp:
        print(f"note: TP {tp} does not divide the {env.tasks_per_node} tasks per node: "
              "tensor-parallel groups span nodes (slow); keep TP <= tasks per node", flush=True)

    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=layout.tensor_model_parallel_size if layout else 1,
        pipeline_model_parallel_size=layout.pipeline_model_parallel_size if layout else 1,
        virtual_pipeline_model_parallel_size=(
            layout.virtual_pipeline_model_parallel_size if layout else None),
        distributed_timeout_minutes=timeout_minutes,
    )
    _initialize_rerun_state_machine_quietly()
    set_random_seed(seed)
    return env


def destroy_distributed() -> None:
    """Tear down megatron's groups and the default process group; safe when none exist."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
