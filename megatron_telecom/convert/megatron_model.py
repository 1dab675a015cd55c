"""One process, no launcher: megatron-core's model at TP=PP=1 for reading and writing checkpoints.

torch_dist checkpoints hold global tensors, so the unsplit model in a single process writes a
checkpoint that every TP/PP layout loads, and loads one saved at any layout. The process group
is a one-rank gloo group on an in-memory store (no port, so conversions can run side by side).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist

from megatron_telecom.models.backends import LOCAL_BACKENDS, get_layer_spec
from megatron_telecom.models.gpt import build_gpt_model
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.models.transformer_config import build_transformer_config
from megatron_telecom.runtime.cpu_shim import install_cpu_shim
from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed


@contextlib.contextmanager
def single_process_megatron() -> Iterator[None]:
    """torch.distributed with one rank and megatron's groups at TP=PP=1, torn down after."""
    install_cpu_shim()  # no-op with CUDA; must precede megatron's first import
    owned = not dist.is_initialized()
    if not owned and dist.get_world_size() != 1:
        raise ValueError("checkpoint conversion runs in one process: call it outside a "
                         f"{dist.get_world_size()}-rank torch.distributed job")
    if owned:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        initialize_distributed()
        yield
    finally:
        if owned:
            destroy_distributed()


def build_unsplit_model(preset: ModelPreset, padded_vocab_size: int) -> torch.nn.Module:
    """The whole GPTModel (local layer spec, fp32, CPU) with uninitialised weights."""
    config = build_transformer_config(preset, use_cpu_initialization=True,
                                      backends=LOCAL_BACKENDS)
    config.perform_initialization = False  # every weight is overwritten or loaded
    model = build_gpt_model(preset, config, padded_vocab_size=padded_vocab_size,
                            seq_length=preset.seq_length, pre_process=True, post_process=True,
                            layer_spec=get_layer_spec(config, LOCAL_BACKENDS))
    return model.eval()
