"""Multi-node jobs for real on conftest's private two-node SLURM cluster (cn01, cn02).

Each node is a slurmd in its own network namespace with its own hostname and address, so a
``--nodes 2`` job really rendezvouses across two hosts (over a bridge the test created). Every
result is compared bitwise with the same layout on one node: DP across nodes, TP=2 inside a node
with PP=2 across nodes, and the faults (time-limit signal, a node lost mid-run, a node that never
comes up). The jobs are tiny (the ``tiny`` preset, 4 layers, sequence 64) to stay cheap.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _dist_helpers import (
    REPO,
    read_jsonl,
    subprocess_env,
    tiny_train_args,
    train_losses,
    wait_for,
    write_token_dataset,
)
from _slurm_helpers import (
    JOB_TIMEOUT_S,
    TwoNodeCluster,
    job_fields,
    log_tail,
    submit,
    wait_done,
)

from megatron_telecom.training.checkpointing import read_tracker
from megatron_telecom.training.requeue import read_history

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.torchrun]

CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"
TRAIN_ITERS = 24
SAVE_INTERVAL = 4


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return write_token_dataset(tmp_path_factory.mktemp("multinode_data") / "tokens")


def _flags(tokens: Path, root: Path, train_iters: int = TRAIN_ITERS, **extra: object) -> list[str]:
    return tiny_train_args(tokens, cache=root / "cache", train_iters=train_iters,
                           save=root / "ckpt", save_interval=SAVE_INTERVAL,
                           log_metrics_file=root / "metrics.jsonl", **extra)


def _env(cluster: TwoNodeCluster, **extra: str) -> dict[str, str]:
    return subprocess_env(SLURM_CONF=cluster.env["SLURM_CONF"], PRETRAIN_ROOT=str(REPO), **extra)


def _pretrain(env: dict, out: Path, nodes: int, per_node: int, flags: list[str]) -> str:
    """Submit slurm/pretrain.sh on ``nodes`` nodes x ``per_node`` CPU tasks; the job id."""
    return submit(env, f"--nodes={nodes}", f"--ntasks-per-node={per_node}", "--gpus-per-node=0",
                  "--cpus-per-task=1", "--time=00:15:00", f"--output={out}",
                  str(REPO / "slurm" / "pretrain.sh"), str(CONFIG), *flags)


def _run(env: dict, root: Path, nodes: int, per_node: int, flags: list[str]) -> str:
    """Run a job to COMPLETED; its output."""
    out = root.with_suffix(".out")
    job = _pretrain(env, out, nodes, per_node, flags)
    final = wait_done(env, job, out)
    assert final["JobState"] == "COMPLETED", log_tail(out)
    return out.read_text()


def _placements(text: str) -> list[str]:
    """The rank placement of every start in a job's output (rank 0's rendezvous line)."""
    return re.findall(r"rendezvous at \S+: \d+ rank\(s\) on \d+ node\(s\): (.*)", text)


@pytest.fixture(scope="module")
def one_node_dp(slurm_two_nodes, tokens, tmp_path_factory) -> dict[int, float]:
    """Losses of the uninterrupted reference: DP=2 as 2 tasks on one node."""
    root = tmp_path_factory.mktemp("one_node_dp") / "run"
    text = _run(_env(slurm_two_nodes), root, 1, 2, _flags(tokens, root))
    assert _placements(text) == ["cn01: ranks 0-1"], text[-3000:]
    return train_losses(root / "metrics.jsonl")


def test_dp_across_two_nodes_matches_one_node(slurm_two_nodes, tokens, one_node_dp, tmp_path):
    root = tmp_path / "run"
    text = _run(_env(slurm_two_nodes), root, 2, 1, _flags(tokens, root))
    assert "2 node(s) cn[01-02], 2 task(s)" in text
    assert _placements(text) == ["cn01: rank 0; cn02: rank 1"], text[-3000:]
    assert train_losses(root / "metrics.jsonl") == one_node_dp  # bitwise: floats compared ==
    assert sorted(one_node_dp) == list(range(1, TRAIN_ITERS + 1))


def test_tp2_inside_nodes_pp2_across_nodes_matches_one_node(slurm_two_nodes, tokens, tmp_path):
    env = _env(slurm_two_nodes)
    layout = {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2}
    losses = {}
    for nodes, per_node, placement in ((1, 4, "cn01: ranks 0-3"),
                                       (2, 2, "cn01: ranks 0-1; cn02: ranks 2-3")):
        root = tmp_path / f"nodes{nodes}"
        text = _run(env, root, nodes, per_node, _flags(tokens, root, 6, **layout))
        assert _placements(text) == [placement], text[-3000:]
        assert "world 4 = TP 2 x PP 2 x DP 1" in text
        losses[nodes] = train_losses(root / "metrics.jsonl")
    assert sorted(losses[2]) == list(range(1, 7))
    assert losses[2] == losses[1]
