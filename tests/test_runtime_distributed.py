"""initialize_distributed under a real 2-process torchrun on gloo.

The module runs itself under torchrun (``python -m torch.distributed.run --nproc_per_node 2
tests/test_runtime_distributed.py OUT_DIR``). Each rank brings megatron up at TP=2, then TP=1,
then PP=2 with interleaving (VPP=2), builds a tiny GPTModel each time and writes what it saw.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _dist_helpers import free_port, run_subprocess, subprocess_env

pytestmark = pytest.mark.torchrun

SEQ, VOCAB, BATCH = 16, 256, 2


# --------------------------------------------------------------------------- child process
def _tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(3))


def _lm_loss(model: torch.nn.Module) -> torch.Tensor:
    """Per-token LM losses [b, s] of `model` (a GPTModel or one chunk) on the fixed tokens."""
    tokens = _tokens()
    position_ids = torch.arange(SEQ).unsqueeze(0).expand(BATCH, -1)
    return model(tokens[:, :-1], position_ids, None, labels=tokens[:, 1:])


def _tiny_loss(tensor_model_parallel_size: int) -> list[float]:
    """Per-token losses of a freshly initialised tiny model on fixed tokens."""
    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model_chunks
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import (
        build_transformer_config,
        parallel_layout_for,
    )
    from megatron_telecom.runtime.distributed import initialize_distributed, job_env

    preset = get_preset("tiny")
    layout = parallel_layout_for(
        preset, tensor_model_parallel_size=tensor_model_parallel_size,
        world_size=job_env().world_size,
    )
    initialize_distributed(layout, seed=1234)
    config = build_transformer_config(preset, layout=layout, backends=choose_backends())
    (model,) = build_gpt_model_chunks(preset, config, padded_vocab_size=VOCAB, seq_length=SEQ,
                                      layer_spec=get_layer_spec(config, choose_backends()))
    loss = _lm_loss(model)
    loss.mean().backward()
    return loss.detach().flatten().tolist()


def _distopt_step_and_checkpoint(ckpt_dir: str) -> bool:
    """DP=2 distributed-optimizer step, then a torch_dist save (model + optimizer, fully parallel)
    and a model load into a fresh model; True when the loaded weights equal the trained ones.
    Covers the DDP, optimizer and dist_checkpointing CUDA sites for the canary."""
    from megatron.core import dist_checkpointing
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import (
        FullyParallelSaveStrategyWrapper,
    )
    from megatron.core.distributed import (
        DistributedDataParallel,
        DistributedDataParallelConfig,
        finalize_model_grads,
    )
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model_chunks
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config

    preset = get_preset("tiny")
    config = build_transformer_config(preset, backends=choose_backends())
    spec = get_layer_spec(config, choose_backends())
    (module,) = build_gpt_model_chunks(preset, config, padded_vocab_size=VOCAB, seq_length=SEQ,
                                       layer_spec=spec)
    model = DistributedDataParallel(
        config=config,
        ddp_config=DistributedDataParallelConfig(
            grad_reduce_in_fp32=True, use_distributed_optimizer=True
        ),
        module=module,
    )
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=1e-3, clip_grad=1.0, use_distributed_optimizer=True),
        [model],
    )
    config.finalize_model_grads_func = finalize_model_grads
    model.zero_grad_buffer()
    optimizer.zero_grad()
    _lm_loss(model).mean().backward()
    finalize_model_grads([model])
    assert optimizer.step()[0]
    state = {"model": module.sharded_state_dict()}
    state["optimizer"] = optimizer.sharded_state_dict(
        state["model"],
        is_loading=False,
        metadata={"distrib_optim_sharding_type": "fully_reshardable"},
    )
    strategy = FullyParallelSaveStrategyWrapper(
        get_default_save_sharded_strategy("torch_dist"), ps.get_data_parallel_group()
    )
    os.makedirs(ckpt_dir, exist_ok=True)
    dist_checkpointing.save(state, ckpt_dir, strategy)
    (fresh,) = build_gpt_model_chunks(preset, config, padded_vocab_size=VOCAB, seq_length=SEQ,
                                      layer_spec=spec)
    loaded = dist_checkpointing.load({"model": fresh.sharded_state_dict()}, ckpt_dir)
    fresh.load_state_dict(loaded["model"])
    trained = module.state_dict()
    return all(
        torch.equal(value, trained[key])
        for key, value in fresh.state_dict().items()
        if isinstance(value, torch.Tensor)
    )


def _groups() -> dict:
    from megatron.core import parallel_state as ps

    return {
        "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(),
        "dp": ps.get_data_parallel_world_size(),
        "vpp": ps.get_virtual_pipeline_model_parallel_world_size(),
    }


def _interleaved_chunks() -> dict:
    """PP=2 x VPP=2 over a 4-layer tiny model: which chunk holds what, and one fwd/bwd."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model_chunks
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import (
        build_transformer_config,
        parallel_layout_for,
    )
    from megatron_telecom.runtime.distributed import initialize_distributed, job_env

    preset = dataclasses.replace(get_preset("tiny"), num_layers=4)
    layout = parallel_layout_for(
        preset, pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2,
        world_size=job_env().world_size,
    )
    initialize_distributed(layout, seed=1234)
    config = build_transformer_config(preset, layout=layout, backends=choose_backends())
    chunks = build_gpt_model_chunks(preset, config, padded_vocab_size=VOCAB, seq_length=SEQ,
                                    layer_spec=get_layer_spec(config, choose_backends()))

    def forward_step(data_iterator, chunk):
        output = _lm_loss(chunk)
        return output, lambda out: (out.float().mean(), {"lm loss": out.float().mean().detach()})

    losses = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=[iter([None] * 2), iter([None] * 2)],
        model=chunks,
        num_microbatches=2,
        seq_length=SEQ,
        micro_batch_size=BATCH,
    )
    return {
        "groups": _groups(),
        "batch_p2p_comm": config.batch_p2p_comm,
        "pre_process": [chunk.pre_process for chunk in chunks],
        "post_process": [chunk.post_process for chunk in chunks],
        "layer_numbers": [[layer.layer_number for layer in c.decoder.layers] for c in chunks],
        "losses": [float(entry["lm loss"]) for entry in losses],
    }


def _child_main(out_dir: str) -> None:
    from megatron_telecom.runtime import cpu_shim
    from megatron_telecom.runtime.distributed import destroy_distributed, detect_distributed_env

    env = detect_distributed_env()
    record: dict = {"env": dataclasses.asdict(env)}
    record["tp2_loss"] = _tiny_loss(2)
    record["tp2_groups"] = _groups()
    record["tp1_loss"] = _tiny_loss(1)
    record["tp1_groups"] = _groups()
    record["checkpoint_roundtrip"] = _distopt_step_and_checkpoint(str(Path(out_dir, "ckpt")))
    record["interleaved"] = _interleaved_chunks()
    record["unknown_cuda_sites"] = cpu_shim.unknown_cuda_sites()
    destroy_distributed()
    record["destroyed"] = not torch.distributed.is_initialized()
    Path(out_dir, f"rank{env.rank}.json").write_text(json.dumps(record))


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    if torch.cuda.is_available():
        pytest.skip("this test exercises the CPU/gloo path")
    out = tmp_path_factory.mktemp("dist")
    env = subprocess_env()
    env.pop("SLURM_PROCID", None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        __file__, str(out),
    ]  # fmt: skip
    try:
        proc = run_subprocess(command, env=env, timeout=150)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun hung (killed after {exc.timeout} s): {exc.stderr!s:.3000}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_torchrun_environment_is_detected(records):
    for rank, record in enumerate(records):
        env = record["env"]
        assert (env["rank"], env["world_size"], env["local_rank"]) == (rank, 2, rank)
        assert env["launcher"] == "torchrun" and env["master_addr"] == "127.0.0.1"
        assert record["destroyed"]


def test_parallel_groups(records):
    for record in records:
        assert record["tp2_groups"] == {"tp": 2, "pp": 1, "dp": 1, "vpp": None}
        assert record["tp1_groups"] == {"tp": 1, "pp": 1, "dp": 2, "vpp": None}
        assert record["interleaved"]["groups"] == {"tp": 1, "pp": 2, "dp": 1, "vpp": 2}


def test_tp2_forward_matches_tp1(records):
    tp2, tp1 = records[0]["tp2_loss"], records[0]["tp1_loss"]
    assert records[1]["tp2_loss"] == tp2  # both TP ranks see the same (all-reduced) loss
    assert max(abs(a - b) for a, b in zip(tp2, tp1, strict=True)) < 1e-5


def test_distributed_optimizer_step_and_checkpoint_roundtrip(records):
    assert records[0]["checkpoint_roundtrip"] and records[1]["checkpoint_roundtrip"]


def test_interleaved_chunks_hold_the_right_layers(records):
    first, last = records[0]["interleaved"], records[1]["interleaved"]
    assert first["pre_process"] == [True, False] and first["post_process"] == [False, False]
    assert last["pre_process"] == [False, False] and last["post_process"] == [False, True]
    assert first["layer_numbers"] == [[1], [3]] and last["layer_numbers"] == [[2], [4]]
    assert first["batch_p2p_comm"] is False
    assert len(last["losses"]) == 2 and all(loss > 0 for loss in last["losses"])


def test_no_unknown_cuda_sites_under_tp_and_pp(records):
    for record in records:
        assert record["unknown_cuda_sites"] == [], "\n".join(record["unknown_cuda_sites"])


if __name__ == "__main__":
    _child_main(sys.argv[1])
