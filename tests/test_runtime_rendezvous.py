"""The SLURM rendezvous in one process: placement, timeouts that name the missing ranks, and
what bring-up reads from a multi-node allocation. (tests/test_multinode_slurm.py runs it across
two real SLURM nodes.)"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from _dist_helpers import free_port

from megatron_telecom.runtime.distributed import detect_distributed_env, rendezvous_timeout_s
from megatron_telecom.runtime.rendezvous import (
    RendezvousError,
    expand_tasks_per_node,
    format_placement,
    rendezvous,
)


def test_expand_tasks_per_node():
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert expand_tasks_per_node("8") == [8]
    with pytest.raises(ValueError, match="tasks per node"):
        expand_tasks_per_node("2(x)")


def test_format_placement():
    assert format_placement(["cn01", "cn01", "cn02", "cn02"]) == "cn01: ranks 0-1; cn02: ranks 2-3"
    assert format_placement(["a", "b", "a", "b", "a"]) == "a: ranks 0,2,4; b: ranks 1,3"
    assert format_placement(["solo"]) == "solo: rank 0"


def test_slurm_multi_node_variables():
    env = detect_distributed_env({
        "SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
        "SLURMD_NODENAME": "cn02", "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_JOB_ID": "7",
        "SLURM_STEP_NODELIST": "cn[01-02]", "SLURM_JOB_NODELIST": "cn[00-02]",
    })
    assert (env.rank, env.local_rank, env.node_rank, env.num_nodes, env.tasks_per_node) == \
        (3, 1, 1, 2, 2)
    assert (env.node, env.nodes, env.master_addr) == ("cn02", ("cn01", "cn02"), "cn01")
    with pytest.raises(ValueError, match="SLURM_NODEID=2 is outside the node list"):
        detect_distributed_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NODEID": "2",
                                "SLURM_JOB_NODELIST": "cn[01-02]"})


def test_rendezvous_timeout_from_the_environment():
    assert rendezvous_timeout_s({}, 10) == 600
    assert rendezvous_timeout_s({"RENDEZVOUS_TIMEOUT": "20"}, 10) == 20
    for bad in ("0", "soon"):
        with pytest.raises(ValueError, match="RENDEZVOUS_TIMEOUT"):
            rendezvous_timeout_s({"RENDEZVOUS_TIMEOUT": bad}, 10)


def _meet(port: int, rank: int, node: str, world_size: int, timeout_s: float, results: dict):
    try:
        results[rank] = rendezvous("127.0.0.1", port, rank=rank, world_size=world_size, node=node,
                                   nodes=["cn01", "cn02"], timeout_s=timeout_s,
                                   collective_timeout=timedelta(minutes=1))
    except RendezvousError as err:
        results[rank] = err


def test_all_ranks_meet_and_rank_0_prints_the_placement(capsys):
    port, results = free_port(), {}
    threads = [threading.Thread(target=_meet, args=(port, rank, node, 3, 30, results))
               for rank, node in enumerate(["cn01", "cn01", "cn02"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(not isinstance(results[rank], Exception) for rank in range(3)), results
    assert (f"rendezvous at 127.0.0.1:{port}: 3 rank(s) on 2 node(s): cn01: ranks 0-1; "
            "cn02: rank 2") in capsys.readouterr().out


def test_a_node_that_never_comes_up_is_named_within_the_timeout():
    port, results = free_port(), {}
    started = time.monotonic()
    _meet(port, 0, "cn01", 2, 1.0, results)
    assert time.monotonic() - started < 10
    assert str(results[0]) == (
        f"rendezvous at 127.0.0.1:{port} timed out after 1 s: 1 of 2 ranks never joined (ranks 1);"
        " no rank joined from node(s) cn02: a node that never came up, or that cannot reach the "
        "first node")


def test_a_rank_that_cannot_reach_the_first_node_says_so():
    port, results = free_port(), {}
    _meet(port, 1, "cn02", 2, 1.0, results)
    assert isinstance(results[1], RendezvousError)
    assert str(results[1]).startswith(f"rank 1 on cn02 could not reach the rendezvous at "
                                      f"127.0.0.1:{port} (rank 0, on the job's first node) "
                                      "within 1 s")
