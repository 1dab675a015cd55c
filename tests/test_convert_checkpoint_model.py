"""A checkpoint knows its model: trained checkpoints record it, --load adopts it, flags that
contradict it are refused naming each field, and a shape mismatch is one line (issue 8 item 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from _dist_helpers import (
    REPO,
    free_port,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    tiny_train_args,
    write_token_dataset,
)

pytestmark = pytest.mark.torchrun


def pretrain_single(args: list[str]):  # noqa: ANN201
    """One plain process (no torchrun, whose own traceback would hide ours): exit code and output."""
    env = subprocess_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    return run_subprocess([sys.executable, "-m", "megatron_telecom.pretrain", *args], env=env,
                          timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint of the `tiny` preset (4 layers) trained for two iterations."""
    base = tmp_path_factory.mktemp("convert_ckpt_model")
    data = write_token_dataset(base / "data" / "tokens")
    save = base / "tiny"
    run_torchrun(1, tiny_train_args(data, cache=base / "cache", train_iters=2, save=save))
    return {"data": data, "cache": base / "cache", "save": save}


def test_load_adopts_recorded_model_without_model_flags(tiny_run, tmp_path):
    args = tiny_train_args(tiny_run["data"], cache=tiny_run["cache"], train_iters=2,
                           model=None, num_layers=None, load=tiny_run["save"], finetune=True)
    proc = run_torchrun(1, args)
    assert "> tiny:" in proc.stdout
    assert f"loaded weights from {tiny_run['save']}/iter_0000002" in proc.stdout


def test_contradicting_flags_are_refused_naming_each_field(tiny_run):
    # the silent hole: `tiny` (RoPE base 1e4) loaded under tiny-llama3 (RoPE base 5e5)
    args = tiny_train_args(tiny_run["data"], cache=tiny_run["cache"], train_iters=2,
                           model="tiny-llama3", load=tiny_run["save"], finetune=True)
    proc = pretrain_single(args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1, proc.stderr[-3000:]
    for expected in ("rotary_base: checkpoint 10000, flags 500000",
                     "rope_scaling: checkpoint False, flags True",
                     "vocab_size: checkpoint 32000, flags 128256", "--model"):
        assert expected in message[0]
    assert "Traceback" not in proc.stderr


def test_shape_mismatch_without_record_is_one_line(tiny_run, tmp_path):
    # a checkpoint that records no model (Megatron-LM's, or older ones): shapes still checked
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_run["save"], bare)
    common = bare / "iter_0000002" / "common.pt"
    state = torch.load(common, weights_only=True)
    del state["model_config"]
    torch.save(state, common)
    args = tiny_train_args(tiny_run["data"], cache=tiny_run["cache"], train_iters=2,
                           model="small", num_layers=None, load=bare, finetune=True)
    proc = pretrain_single(args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "has shape" in message[0] and "in the checkpoint" in message[0]
    assert "Traceback" not in proc.stderr
