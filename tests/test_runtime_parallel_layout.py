"""The parallel layout: every rule tying TP/PP/VPP/DP, the model and the batch sizes, checked
once and without a process group (a bad layout fails before distributed bring-up)."""

from __future__ import annotations

import sys

import pytest
from _dist_helpers import REPO, run_subprocess, subprocess_env

from megatron_telecom.runtime.parallel_layout import compute_parallel_layout

MODEL = {"num_layers": 4, "num_attention_heads": 4, "num_query_groups": 2}


def _layout(world_size: int = 1, **kwargs):
    return compute_parallel_layout(world_size=world_size, **{**MODEL, **kwargs})


def test_data_parallel_microbatches_and_virtual_stages():
    layout = _layout(8, tensor_model_parallel_size=2, pipeline_model_parallel_size=2,
                     num_layers_per_virtual_pipeline_stage=1, micro_batch_size=2,
                     global_batch_size=16)
    assert (layout.data_parallel_size, layout.num_microbatches) == (2, 4)
    assert layout.virtual_pipeline_model_parallel_size == 2
    assert (layout.world_size, layout.micro_batch_size, layout.global_batch_size) == (8, 2, 16)


def test_defaults_one_microbatch_and_no_interleaving():
    layout = _layout(4, micro_batch_size=3)
    assert (layout.data_parallel_size, layout.global_batch_size, layout.num_microbatches) == (4, 12, 1)
    # a virtual pipeline size of 1 is no interleaving, as in Megatron-LM
    assert _layout(2, pipeline_model_parallel_size=2,
                   virtual_pipeline_model_parallel_size=1).virtual_pipeline_model_parallel_size is None


@pytest.mark.parametrize(("world_size", "kwargs", "message"), [
    (6, dict(tensor_model_parallel_size=2, pipeline_model_parallel_size=2),
     "world size 6 is not divisible by TP x PP = 2 x 2"),
    (1, dict(tensor_model_parallel_size=0), "must be >= 1, got TP=0"),
    (2, dict(global_batch_size=3), "--global-batch-size 3 must be a multiple of --micro-batch-size 1"),
    (1, dict(micro_batch_size=0), "--micro-batch-size and --global-batch-size must be > 0"),
    (3, dict(pipeline_model_parallel_size=3), "4 layers do not split into PP=3 x VPP=1"),
    (2, dict(pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=4),
     "do not split into PP=2 x VPP=4"),
    (2, dict(pipeline_model_parallel_size=2, num_layers_per_virtual_pipeline_stage=3),
     "4 layers over PP=2 do not split into stages of 3"),
    (2, dict(pipeline_model_parallel_size=2, num_layers_per_virtual_pipeline_stage=1,
             virtual_pipeline_model_parallel_size=2), "not both"),
    (1, dict(virtual_pipeline_model_parallel_size=2), "interleaved pipeline"),
    (1, dict(virtual_pipeline_model_parallel_size=0), "must be >= 1"),
    (4, dict(tensor_model_parallel_size=4), "4 heads / 2 query groups do not split across TP=4"),
    (1, dict(sequence_parallel=True), "--sequence-parallel needs --tensor-model-parallel-size > 1"),
])
def test_bad_layouts_say_what_to_change(world_size, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _layout(world_size, **kwargs)


def test_pretrain_refuses_a_bad_layout_before_bring_up(tmp_path):
    """TP=2 in a one-process job: exit 2 with the layout error, before any process group."""
    proc = run_subprocess(
        [sys.executable, "-m", "megatron_telecom.pretrain", "--train-iters", "1", "--lr", "1e-3",
         "--tokenizer-type", "NullTokenizer", "--vocab-size", "511",
         "--data-path", str(tmp_path / "absent"), "--tensor-model-parallel-size", "2"],
        env=subprocess_env(), timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: world size 1 is not divisible by TP x PP = 2 x 1" in proc.stderr
    assert "Traceback" not in proc.stderr
