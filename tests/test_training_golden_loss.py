"""Golden losses of the `tiny` preset: the first iterations, bitwise, from a fixed seed.

One plain process (no torchrun) trains on a synthetic dataset; its losses must equal
tests/golden/losses/tiny.json to the last bit, so a refactor that changes numerics fails here
at once. A deliberate change of numerics regenerates the file:
``GOLDEN_UPDATE=1 python -m pytest tests/test_training_golden_loss.py``.
"""

from __future__ import annotations

import json
import os
import sys

from _dist_helpers import (
    REPO,
    free_port,
    run_subprocess,
    subprocess_env,
    tiny_train_args,
    train_losses,
    write_token_dataset,
)

GOLDEN = REPO / "tests" / "golden" / "losses" / "tiny.json"
ITERATIONS = 5


def test_tiny_losses_are_the_golden_ones(tmp_path):
    data = write_token_dataset(tmp_path / "tokens")  # seeded: the same tokens everywhere
    metrics = tmp_path / "metrics.jsonl"
    args = tiny_train_args(data, cache=tmp_path / "cache", train_iters=ITERATIONS,
                           log_metrics_file=metrics)
    env = subprocess_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    proc = run_subprocess([sys.executable, "-m", "megatron_telecom.pretrain", *args], env=env,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [train_losses(metrics)[i] for i in range(1, ITERATIONS + 1)]
    if os.environ.get("GOLDEN_UPDATE"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        flags = " ".join(a for a in args if not a.startswith(str(tmp_path)))
        GOLDEN.write_text(json.dumps({"flags": flags, "lm_loss": losses}, indent=2) + "\n")
    golden = json.loads(GOLDEN.read_text())["lm_loss"]
    assert [float.hex(x) for x in losses] == [float.hex(x) for x in golden]
