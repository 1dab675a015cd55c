"""The rendezvous of a SLURM job: every rank meets rank 0's store on the job's first node.

srun starts the tasks; nothing else knows when all of them are up. Each rank registers its
node in a TCP store that rank 0 serves at the master address (the step's first node, taken from
the allocation). Rank 0 waits at most the rendezvous timeout for all of them, then prints which
rank runs on which node; a rank that never joins (its node never came up, or cannot reach the
first node) ends the job with an error naming the missing ranks and nodes instead of a hang.
The default process group is then built on that store.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import torch.distributed as dist

__all__ = ["RendezvousError", "expand_tasks_per_node", "format_placement", "rendezvous"]

_KEY = "rendezvous/rank{}"
_DONE = "rendezvous/complete"
_POLL_S = 0.2


class RendezvousError(RuntimeError):
    """The ranks of a job did not all meet within the rendezvous timeout."""


def expand_tasks_per_node(value: str) -> list[int]:
    """SLURM's compressed task counts per node ("2(x3),1") as one count per node ([2, 2, 2, 1])."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ValueError(f"cannot parse SLURM tasks per node {value!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _ranges(ranks: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    spans: list[list[int]] = []
    for rank in sorted(ranks):
        if spans and rank == spans[-1][1] + 1:
            spans[-1][1] = rank
        else:
            spans.append([rank, rank])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def format_placement(nodes_of_ranks: list[str]) -> str:
    """Which ranks run on which node, in node order of first appearance: "cn01: ranks 0-1; ..."."""
    by_node: dict[str, list[int]] = {}
    for rank, node in enumerate(nodes_of_ranks):
        by_node.setdefault(node, []).append(rank)
    return "; ".join(f"{node}: rank{'s' if len(ranks) > 1 else ''} {_ranges(ranks)}"
                     for node, ranks in by_node.items())


def _connect(master_addr: str, master_port: int, *, rank: int, world_size: int, node: str,
             timeout_s: float) -> dist.TCPStore:
    """Rank 0 serves the store; the others connect (retrying until the timeout)."""
    try:
        return dist.TCPStore(master_addr, master_port, world_size, is_master=rank == 0,
                             timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
    except RuntimeError as err:
        role = "could not serve" if rank == 0 else "could not reach"
        raise RendezvousError(
            f"rank {rank} on {node} {role} the rendezvous at {master_addr}:{master_port} "
            f"(rank 0, on the job's first node) within {timeout_s:g} s: {err}") from None


def _wait_for_all(store: dist.TCPStore, *, world_size: int, nodes: list[str], where: str,
                  timeout_s: float) -> list[str]:
    """Rank 0: each rank's node once all have registered; RendezvousError naming the missing."""
    keys = [_KEY.format(rank) for rank in range(world_size)]
    deadline = time.monotonic() + timeout_s
    while not store.check(keys):
        if time.monotonic() >= deadline:
            joined = [rank for rank, key in enumerate(keys) if store.check([key])]
            missing = sorted(set(range(world_size)) - set(joined))
            seen = {store.get(keys[rank]).decode() for rank in joined}
            absent = [node for node in nodes if node not in seen]
            raise RendezvousError(
                f"rendezvous at {where} timed out after {timeout_s:g} s: {len(missing)} of "
                f"{world_size} ranks never joined (ranks {_ranges(missing)})"
                + (f"; no rank joined from node(s) {', '.join(absent)}" if absent else "")
                + ": a node that never came up, or that cannot reach the first node")
        time.sleep(_POLL_S)
    return [store.get(key).decode() for key in keys]


def rendezvous(master_addr: str, master_port: int, *, rank: int, world_size: int, node: str,
               nodes: list[str], timeout_s: float, collective_timeout: timedelta,
               ) -> dist.TCPStore:
    """Meet every rank at rank 0's store within ``timeout_s``; the store, for the process group.

    ``node`` is this rank's node, ``nodes`` the step's node list (to name the ones missing).
    Rank 0 prints the placement of the ranks. Raises RendezvousError on timeout.
    """
    where = f"{master_addr}:{master_port}"
    store = _connect(master_addr, master_port, rank=rank, world_size=world_size, node=node,
                     timeout_s=timeout_s)
    store.set(_KEY.format(rank), node)
    if rank == 0:
        placement = _wait_for_all(store, world_size=world_size, nodes=nodes, where=where,
                                  timeout_s=timeout_s)
        print(f"rendezvous at {where}: {world_size} rank(s) on {len(set(placement))} node(s): "
              f"{format_placement(placement)}", flush=True)
        store.set(_DONE, "1")
    else:
        try:
            store.wait([_DONE])  # rank 0 ends the job if the rendezvous fails
        except RuntimeError as err:
            raise RendezvousError(f"rank {rank} on {node}: the rendezvous at {where} did not "
                                  f"complete within {timeout_s:g} s: {err}") from None
    store.set_timeout(collective_timeout)
    return store
