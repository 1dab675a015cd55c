"""Launcher detection: torchrun variables, SLURM variables and host lists, single process."""

from __future__ import annotations

import pytest

from megatron_telecom.runtime.distributed import (
    DEFAULT_MASTER_PORT,
    DistributedEnv,
    detect_distributed_env,
    expand_slurm_hostlist,
)


@pytest.mark.parametrize(
    ("hostlist", "expected"),
    [
        ("node001", ["node001"]),
        ("node[001-003,007]", ["node001", "node002", "node003", "node007"]),
        ("gpu[8-10]", ["gpu8", "gpu9", "gpu10"]),
        ("a[1-2],b,c[05]", ["a1", "a2", "b", "c05"]),
        ("login1,gpu[098-101]", ["login1", "gpu098", "gpu099", "gpu100", "gpu101"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("host-1.cluster.org", ["host-1.cluster.org"]),
    ],
)
def test_expand_slurm_hostlist(hostlist, expected):
    assert expand_slurm_hostlist(hostlist) == expected


@pytest.mark.parametrize("bad", ["node[1-", "node]1[", "node[a-b]", "node[5-3]", ""])
def test_expand_slurm_hostlist_rejects_malformed(bad):
    with pytest.raises(ValueError, match="host list"):
        expand_slurm_hostlist(bad)


def test_torchrun_variables_win_over_slurm():
    env = detect_distributed_env(
        {
            "RANK": "3",
            "WORLD_SIZE": "4",
            "LOCAL_RANK": "1",
            "MASTER_ADDR": "10.0.0.5",
            "MASTER_PORT": "29555",
            "SLURM_PROCID": "0",
            "SLURM_NTASKS": "1",
        }
    )
    assert env == DistributedEnv(
        rank=3, world_size=4, local_rank=1, master_addr="10.0.0.5", master_port=29555,
        launcher="torchrun",
    )


def test_slurm_master_is_first_host_of_the_job():
    env = detect_distributed_env(
        {
            "SLURM_PROCID": "5",
            "SLURM_NTASKS": "8",
            "SLURM_LOCALID": "1",
            "SLURM_JOB_ID": "123456",
            "SLURM_JOB_NODELIST": "gpu[017-018,020]",
            "SLURM_NODELIST": "ignored[1-2]",
        }
    )
    assert env.launcher == "slurm"
    assert (env.rank, env.world_size, env.local_rank) == (5, 8, 1)
    assert env.master_addr == "gpu017"
    assert env.master_port == 10000 + 123456 % 50000


def test_slurm_falls_back_to_slurm_nodelist_and_master_env():
    base = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NODELIST": "cn[3-4]"}
    assert detect_distributed_env(base).master_addr == "cn3"
    pinned = detect_distributed_env({**base, "MASTER_ADDR": "head", "MASTER_PORT": "7000"})
    assert (pinned.master_addr, pinned.master_port) == ("head", 7000)


def test_slurm_without_nodelist_is_a_clear_error():
    with pytest.raises(ValueError, match="SLURM_JOB_NODELIST"):
        detect_distributed_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})


def test_single_process_defaults():
    env = detect_distributed_env({})
    assert env == DistributedEnv(
        rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1",
        master_port=DEFAULT_MASTER_PORT, launcher="single",
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"RANK": "x", "WORLD_SIZE": "2"},
        {"RANK": "2", "WORLD_SIZE": "2"},
        {"SLURM_PROCID": "1", "SLURM_NTASKS": "two", "SLURM_NODELIST": "a"},
    ],
)
def test_bad_values_are_clear_errors(environ):
    with pytest.raises(ValueError, match="integer|outside world size"):
        detect_distributed_env(environ)
