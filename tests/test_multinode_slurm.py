"""Multi-node jobs for real on conftest's private two-node SLURM cluster (cn01, cn02).

Each node is a slurmd in its own network namespace with its own hostname and address, so a
``--nodes 2`` job really rendezvouses across two hosts (over a bridge the test created). Every
result is compared bitwise with the same layout on one node: DP across nodes, TP=2 inside a node
with PP=2 across nodes, and the faults (time-limit signal, a node lost mid-run, a node that never
comes up). The jobs are tiny (the ``tiny`` preset, 4 layers, sequence 64) to stay cheap.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _dist_helpers import REPO, subprocess_env, tiny_train_args, train_losses, write_token_dataset
from _slurm_helpers import (
    JOB_TIMEOUT_S,
    TwoNodeCluster,
    cluster_logs,
    job_fields,
    log_tail,
    submit,
    wait_all,
    wait_done,
    wait_for,
    wait_queue_empty,
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


# ---- faults -------------------------------------------------------------------------------------

def _when(predicate, env: dict, job: str, out: Path, what: str):
    """Poll ``predicate`` while the job is alive; fail with the job's output if it ended first."""
    def alive_and() -> object:
        if result := predicate():
            return result
        assert job_fields(env, job).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), \
            log_tail(out)
        return False

    return wait_for(alive_and, timeout=JOB_TIMEOUT_S, what=what, poll=0.05,
                    details=lambda: log_tail(out))


def _history(root: Path) -> list[tuple]:
    return [(e["event"], e["iteration"], e["restart"], e.get("reason"), e.get("requeued"))
            for e in read_history(root / "ckpt")]


def test_time_limit_signal_on_two_nodes_requeues_once_and_resumes_on_both(
        slurm_two_nodes, tokens, one_node_dp, tmp_path):
    env = _env(slurm_two_nodes)
    root = tmp_path / "run"
    out = root.with_suffix(".out")
    job = _pretrain(env, out, 2, 1, _flags(tokens, root))
    metrics = root / "metrics.jsonl"
    _when(lambda: metrics.exists() and train_losses(metrics), env, job, out, "a logged iteration")
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True, timeout=30)
    final = wait_done(env, job, out)
    text = out.read_text()
    assert (final["JobState"], final["Restarts"]) == ("COMPLETED", "1"), text[-4000:]
    saved_at = int(re.search(r"exiting at iteration (\d+) on signal SIGUSR1", text).group(1))
    assert 0 < saved_at < TRAIN_ITERS
    # both ranks (one per node) wrote their part of the checkpoint; both nodes resumed from it
    shards = (root / "ckpt" / f"iter_{saved_at:07d}").glob("__*.distcp")
    assert {name.name.split("_")[2] for name in shards} == {"0", "1"}
    assert _placements(text) == ["cn01: rank 0; cn02: rank 1"] * 2, text[-4000:]
    assert f"requeuing job {job} after the checkpoint at iteration {saved_at}" in text
    assert f"loaded checkpoint {root / 'ckpt'}/iter_{saved_at:07d}" in text
    assert _history(root) == [("start", 0, 0, None, None),
                              ("stop", saved_at, 0, "signal SIGUSR1", True),
                              ("start", saved_at, 1, None, None),
                              ("stop", TRAIN_ITERS, 1, "done", False)]
    assert train_losses(root / "metrics.jsonl") == one_node_dp  # bitwise


def test_node_lost_mid_run_resumes_from_the_last_checkpoint(slurm_two_nodes, tokens, one_node_dp,
                                                            tmp_path):
    cluster = slurm_two_nodes
    env = _env(cluster)
    root = tmp_path / "run"
    out = root.with_suffix(".out")
    job = _pretrain(env, out, 2, 1, _flags(tokens, root))
    metrics = root / "metrics.jsonl"

    def past_a_checkpoint() -> bool:
        saved = read_tracker(root / "ckpt")
        if saved is None or not metrics.exists():
            return False
        if max(train_losses(metrics), default=0) <= saved:
            return False
        for node in cluster.namespaces:  # freeze the run here: the next step kills cn02
            cluster.signal_tasks(node, signal.SIGSTOP)
        return True

    _when(past_a_checkpoint, env, job, out, "an iteration past a checkpoint")
    saved, lost_at = read_tracker(root / "ckpt"), max(train_losses(metrics))
    assert saved < TRAIN_ITERS, "the run finished before the node could be lost"
    cluster.kill_node("cn02")
    cluster.signal_tasks("cn01", signal.SIGCONT)
    # SLURM decides: cn01's task fails on the broken connection (the job FAILED), or cn02 stops
    # answering first (NODE_FAIL: the job is requeued and waits for two nodes)
    wait_for(lambda: job_fields(env, job).get("JobState") != "RUNNING", timeout=120,
             what=f"job {job} to notice the lost node", poll=0.5, details=lambda: log_tail(out))
    cluster.start_node("cn02")
    # a requeued job keeps SLURM's own hold (BeginTime: cred_expire, 40 s here): lifted early,
    # the restart can meet the lost run's step not yet cleaned up ("Requested nodes are busy")
    final = wait_done(env, job, out, release=False)
    if final["JobState"] != "COMPLETED":  # failed: resubmitted, the same command
        assert final["JobState"] in ("FAILED", "NODE_FAIL"), log_tail(out)
        job = _pretrain(env, out, 2, 1, _flags(tokens, root))
        final = wait_done(env, job, out)
        assert final["JobState"] == "COMPLETED", log_tail(out)
    text = out.read_text()
    assert f"loaded checkpoint {root / 'ckpt'}/iter_{saved:07d}" in text, text[-4000:]
    assert _placements(text)[-1] == "cn01: rank 0; cn02: rank 1"
    history = read_history(root / "ckpt")
    # from scratch once, then from the last checkpoint before the loss. SLURM may fail the
    # restarted job once more while cn02 comes back (starts [0, 4, 4] in CI, [0, 4, 12] here):
    # every later start resumes from a saved checkpoint, never from an earlier one
    iterations = [e["iteration"] for e in history if e["event"] == "start"]
    why = f"starts {iterations}\n{history}\n{log_tail(out)}\n{cluster_logs(cluster.base)}"
    assert iterations[:2] == [0, saved], why
    assert iterations[1:] == sorted(iterations[1:]), why
    assert all(it % SAVE_INTERVAL == 0 for it in iterations), why
    assert history[-1]["iteration"] == TRAIN_ITERS, why
    # nothing lost: every iteration, those replayed after the checkpoint included, bitwise
    assert saved < lost_at
    assert train_losses(root / "metrics.jsonl") == one_node_dp


def test_node_that_never_comes_up_fails_within_the_rendezvous_timeout(slurm_two_nodes, tokens,
                                                                      tmp_path):
    cluster = slurm_two_nodes
    env = _env(cluster, RENDEZVOUS_TIMEOUT="20")
    root = tmp_path / "run"
    out = root.with_suffix(".out")
    job = _pretrain(env, out, 2, 1, _flags(tokens, root))
    # cn02's task stops before it can join (python is still importing): it never comes up
    _when(lambda: cluster.signal_tasks("cn02", signal.SIGSTOP), env, job, out,
          "the task on cn02 to start")
    stopped = time.monotonic()
    final = wait_done(env, job, out, timeout=240)
    took = time.monotonic() - stopped
    text = out.read_text()
    assert final["JobState"] == "FAILED", text[-4000:]
    assert re.search(r"rendezvous at cn01:\d+ timed out after 20 s: 1 of 2 ranks never joined "
                     r"\(ranks 1\); no rank joined from node\(s\) cn02", text), text[-4000:]
    assert took < 180, f"{took:.0f} s: far more than the 20 s rendezvous timeout plus start-up"
    assert "lm loss" not in text
    [stop] = read_history(root / "ckpt")  # rank 0 recorded why the run ended
    assert stop["event"] == "stop" and stop["requeued"] is False
    assert stop["reason"].startswith("failed: RendezvousError: rendezvous at cn01:")
    wait_for(lambda: not any(cluster.signal_tasks(node, 0) for node in cluster.namespaces),
             timeout=60, what="the job's tasks to be gone from both nodes")


# ---- the other stages across nodes --------------------------------------------------------------
# A task asking for 3 of a node's 4 CPUs needs a node of its own: two at once run on both nodes.

def _nodes_named(logs: list[Path], pattern: str) -> set[str]:
    return {node for log in logs for node in re.findall(pattern, log.read_text())}


def test_curate_sh_tasks_on_both_nodes_give_the_local_executors_output(
        slurm_two_nodes, curation_rfc_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("rfc768", "rfc3311", "rfc3515"):
        shutil.copy(curation_rfc_dir / f"{name}.txt", inputs / f"{name}.txt")
    shutil.copy(curation_rfc_dir / "rfc3515.txt", inputs / "rfc3515-copy.txt")
    common = ["--input", str(inputs), "--tasks", "2", "--minhash-buckets", "2"]
    on_slurm = [*common, "--output-dir", str(tmp_path / "slurm"), "--workers", "-1",
                "--cpus-per-task", "3", "--mem-per-cpu-gb", "1", "--time", "00:10:00",
                "--job-name", "curmn", "--env-command",
                f"source {sys.prefix}/bin/activate; cd {REPO}; echo curation task on $SLURMD_NODENAME"]
    env = subprocess_env(SLURM_CONF=slurm_two_nodes.env["SLURM_CONF"], CURATE_EXECUTOR="slurm",
                         CURATE_PARTITION="debug", CURATE_ROOT=str(REPO))
    out = tmp_path / "curate.out"
    job = submit(env, "--cpus-per-task=1", "--mem-per-cpu=1G", f"--output={out}",
                 str(REPO / "slurm" / "curate.sh"), *on_slurm)
    assert wait_done(env, job, out)["JobState"] == "COMPLETED", log_tail(out)
    wait_queue_empty(env)
    local = [sys.executable, str(REPO / "tools" / "curate_corpus.py"), *common, "--output-dir",
             str(tmp_path / "local"), "--executor", "local", "--workers", "1"]
    done = subprocess.run(local, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    task_logs = sorted((tmp_path / "slurm" / "_work" / "logs").glob("*/slurm_logs/*.out"))
    assert _nodes_named(task_logs, r"curation task on (\S+)") == {"cn01", "cn02"}
    shards = {p.name: p.read_bytes() for p in (tmp_path / "local").glob("*.jsonl")}
    assert shards and {p.name: p.read_bytes()
                       for p in (tmp_path / "slurm").glob("*.jsonl")} == shards


def test_evaluate_sh_shards_on_both_nodes_then_merge(slurm_two_nodes, evaluation_tiny_model,
                                                     evaluation_teleqna_fixture, tmp_path):
    env = subprocess_env(SLURM_CONF=slurm_two_nodes.env["SLURM_CONF"], EVALUATE_SHARDS="2",
                         EVALUATE_SBATCH_ARGS="--gpus-per-node=0 --cpus-per-task=3 "
                                              "--time=00:10:00")
    model = ["--model", str(evaluation_tiny_model), "--data", str(evaluation_teleqna_fixture)]
    output = tmp_path / "eval" / "teleqna.json"
    proc = subprocess.run(["bash", str(REPO / "slurm" / "evaluate.sh"), "teleqna", *model,
                           "--output", str(output)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    merge = re.search(r"merge job (\d+)", proc.stdout).group(1)
    assert wait_all(env, [merge], tmp_path) == {merge: "COMPLETED"}
    shard_logs = sorted((tmp_path / "eval" / "teleqna.shards").glob("shard-*.out"))
    assert _nodes_named(shard_logs, r"shard \d of 2 on (\S+)") == {"cn01", "cn02"}
    one = tmp_path / "one.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "evaluate.py"), "teleqna", *model,
                    "--output", str(one)], env=subprocess_env(), check=True, capture_output=True,
                   timeout=300, cwd=REPO)
    merged, single = (json.loads(path.read_text())["teleqna"] for path in (output, one))
    assert merged.keys() == single.keys()
    for key, result in merged.items():  # the same scores; times and the shard count differ
        assert _without(result, "seconds", "questions_per_second", "num_shards") == \
            _without(single[key], "seconds", "questions_per_second", "num_shards")


def _without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}
