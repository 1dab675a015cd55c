"""Bring-up under a real SLURM launch: ``srun -n 2`` on a private one-node cluster.

The cluster is conftest's `slurm_cluster` (munged + slurmctld + slurmd under a temporary
folder); it skips where the SLURM/munge binaries or root are missing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

_CHILD = """
import json, os, torch
from megatron.core import parallel_state
from megatron_telecom.models.transformer_config import parallel_layout_for
from megatron_telecom.models.presets import get_preset
from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed
env = initialize_distributed(parallel_layout_for(get_preset("tiny"), tensor_model_parallel_size=2))
total = torch.ones(1) * (env.rank + 1)
torch.distributed.all_reduce(total)
print(json.dumps({
    "env": env.__dict__, "sum": float(total),
    "tp": parallel_state.get_tensor_model_parallel_world_size(),
    "nodelist": os.environ["SLURM_JOB_NODELIST"],
}))
destroy_distributed()
"""


@pytest.mark.slow
def test_srun_two_tasks_bring_up_gloo_and_tp2(slurm_cluster):
    env = {**slurm_cluster, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = ["srun", "-N1", "-n2", "--cpus-per-task=1", sys.executable, "-c", _CHILD]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"srun hung (killed after {exc.timeout} s)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = sorted(
        (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
        key=lambda record: record["env"]["rank"],
    )
    host = socket.gethostname().split(".")[0]
    assert [r["env"]["rank"] for r in records] == [0, 1]
    for record in records:
        assert record["env"]["launcher"] == "slurm" and record["env"]["world_size"] == 2
        assert record["env"]["master_addr"] == host == record["nodelist"]
        assert record["env"]["local_rank"] == record["env"]["rank"]
        assert record["sum"] == 3.0 and record["tp"] == 2
