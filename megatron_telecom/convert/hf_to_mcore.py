"""Hugging Face Llama/Mistral folder -> megatron torch_dist checkpoint in Megatron-LM's layout.

Written by one process: ``<save>/release/`` (torch_dist shards, common.pt, metadata.json),
``<save>/latest_checkpointed_iteration.txt`` = ``release`` and ``<save>/tokenizer/``. The
checkpoint records its model config (RoPE base and scaling included), so
``megatron_telecom.pretrain --load <save> --finetune`` adopts the architecture at any TP/PP.
The vocabulary is padded for --target-tensor-parallel-size (Megatron-LM's rule; padded rows
are zero); TP and PP are otherwise only checked here, since torch_dist stores global tensors.

The conversion streams: each stored tensor is read from the memory-mapped safetensors when the
checkpoint writer reaches it (Q/K/V and gate/up of one layer at a time), written and dropped, so
memory holds about one layer besides the libraries (``convert/dist_ckpt.py``). ``streaming=False``
is the previous path (the whole model filled, then megatron's own writer; ~1.1x the fp32 bytes),
kept as the reference the streaming output is tested bit for bit against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from megatron_telecom.atomic import staged_folder
from megatron_telecom.bundled import is_bundled, resolve_hf_path
from megatron_telecom.convert import mapping
from megatron_telecom.convert.hf_config import preset_from_hf_config, read_hf_config
from megatron_telecom.convert.hf_io import TOKENIZER_FILES, HFWeights, copy_tokenizer_files
from megatron_telecom.convert.megatron_model import build_unsplit_model, single_process_megatron
from megatron_telecom.models.checkpoint_format import (
    TOKENIZER_DIRNAME,
    CheckpointArgs,
    checkpoint_dir,
    common_state,
    write_tracker,
)
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.models.transformer_config import pad_vocab_size, parallel_layout_for
from megatron_telecom.runtime.cpu_shim import install_cpu_shim

if TYPE_CHECKING:
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

GENERATION_CONFIG_FILENAME = "generation_config.json"


def _check_weights(weights: HFWeights, preset: ModelPreset) -> None:
    """Every tensor present with the shape the config implies; nothing unexpected."""
    expected = mapping.expected_hf_shapes(preset)
    missing = sorted(set(expected) - set(weights.weight_map))
    if missing:
        raise ValueError(f"{weights.folder}: {len(missing)} tensors missing from the weights, "
                         f"e.g. {', '.join(missing[:3])}")
    for name, shape in expected.items():
        if weights.shape(name) != shape:
            raise ValueError(f"{weights.folder}: tensor {name} has shape {weights.shape(name)}, "
                             f"config.json implies {shape}")
    extra = sorted(n for n in set(weights.weight_map) - set(expected)
                   if not n.endswith(mapping.IGNORED_HF_SUFFIXES)
                   and not (n == mapping.OUTPUT_LAYER[1] and not
                            preset.untie_embeddings_and_output_weights))
    if extra:
        raise ValueError(f"{weights.folder}: tensors a Llama model does not have, e.g. "
                         f"{', '.join(extra[:3])}: not a plain {preset.hf_architecture}")


def _check_tokenizer(source: Path, preset: ModelPreset) -> int | None:
    """The tokenizer's size (None without tokenizer files); refused when it exceeds the embedding."""
    if not any((source / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    size = len(AutoTokenizer.from_pretrained(str(source)))
    if size > preset.vocab_size:
        raise ValueError(f"{source}: the tokenizer has {size} tokens but the embedding only "
                         f"{preset.vocab_size} rows (vocab_size in config.json): token ids past "
                         "the embedding cannot be looked up; fix the tokenizer or the config")
    return size


def _padded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` with zero rows appended up to ``rows`` (the padded vocabulary)."""
    if tensor.shape[0] == rows:
        return tensor
    out = torch.zeros((rows, *tensor.shape[1:]), dtype=tensor.dtype)
    out[: tensor.shape[0]].copy_(tensor)
    return out


def _hf_producer(state: dict, weights: HFWeights, preset: ModelPreset
                 ) -> Callable[[ShardedTensor], torch.Tensor]:
    """produce(sharded tensor of ``state``) -> its data, read from the HF weights when asked:
    Q/K/V merged for one layer, each half of [gate; up] its HF tensor, vocabulary padded."""
    sources: dict[tuple[str, tuple[int, ...]], tuple[str, tuple[str, ...]]] = {}
    for name, hf_names in mapping.tensor_names(preset):
        if name.endswith(mapping.FC1_SUFFIX):  # megatron's factory: [gate, up] halves
            for half, hf_name in zip(state[name], hf_names, strict=True):
                sources[half.key, half.global_offset] = (name, (hf_name,))
        else:
            sources[state[name].key, state[name].global_offset] = (name, hf_names)

    def produce(sharded: ShardedTensor) -> torch.Tensor:
        name, hf_names = sources[sharded.key, sharded.global_offset]
        tensor = mapping.merge(name, [weights.get(n) for n in hf_names], preset).to(sharded.dtype)
        if name in (mapping.EMBEDDING[0], mapping.OUTPUT_LAYER[0]):
            tensor = _padded(tensor, sharded.local_shape[0])
        return tensor

    return produce


def _sharded_state(model: torch.nn.Module, weights: HFWeights, preset: ModelPreset) -> dict:
    """The model's sharded state holding the HF weights, one copy of them in memory (the
    in-memory path, ``streaming=False``).

    Every tensor is copied into the model one at a time (padded vocabulary rows zero), except
    fc1: megatron's [gate; up] factory would hand the writer views of the fused weight, which
    it clones; its two halves get HF's gate and up tensors instead (the fused weight is never
    touched, so never allocated).
    """
    from megatron.core.dist_checkpointing.mapping import apply_factories

    params = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, hf_names in mapping.tensor_names(preset):
            if name.endswith(mapping.FC1_SUFFIX):
                continue
            tensor = mapping.merge(name, [weights.get(n) for n in hf_names], preset)
            target = params[name]
            if name in (mapping.EMBEDDING[0], mapping.OUTPUT_LAYER[0]):
                target[tensor.shape[0]:].zero_()
                target = target[: tensor.shape[0]]
            target.copy_(tensor)
            del tensor
    state = model.sharded_state_dict()
    apply_factories(state)
    for name, hf_names in mapping.tensor_names(preset):
        if name.endswith(mapping.FC1_SUFFIX):
            for half, hf_name in zip(state[name], hf_names, strict=True):  # [gate, up]
                half.data = weights.get(hf_name).to(half.data.dtype)  # no copy when fp32
    return state


def _model_state(weights: HFWeights, preset: ModelPreset, padded: int, *, streaming: bool
                 ) -> tuple[dict, Any]:
    """(the model's sharded state, the save strategy that writes it) for either path."""
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    if streaming:
        from megatron_telecom.convert.dist_ckpt import StreamingSaveStrategy, meta_sharded_state

        state = meta_sharded_state(preset, padded)
        return state, StreamingSaveStrategy(_hf_producer(state, weights, preset))
    model = build_unsplit_model(preset, padded)
    return _sharded_state(model, weights, preset), get_default_save_sharded_strategy("torch_dist")


def convert_hf_to_mcore(hf_path: str | Path, save: str | Path, *,
                        target_tensor_parallel_size: int = 1,
                        target_pipeline_model_parallel_size: int = 1,
                        make_vocab_size_divisible_by: int = 128,
                        streaming: bool = True) -> Path:
    """Convert the HF model at ``hf_path`` (folder or ``bundled:NAME``) into ``save``; returns it.

    ``streaming=False`` takes the previous in-memory path (same output, ~1.1x the model's bytes).
    """
    install_cpu_shim()  # before megatron's first import
    from megatron.core import dist_checkpointing

    start = time.monotonic()
    source = resolve_hf_path(hf_path)
    name = str(hf_path)[len("bundled:"):] if is_bundled(hf_path) else source.name
    hf_config = read_hf_config(source)
    preset = preset_from_hf_config(hf_config, name=name)
    tp, pp = target_tensor_parallel_size, target_pipeline_model_parallel_size
    parallel_layout_for(preset, tensor_model_parallel_size=tp,
                        pipeline_model_parallel_size=pp)  # refuses a TP/PP that cannot split
    weights = HFWeights(source)
    _check_weights(weights, preset)
    tokenizer_size = _check_tokenizer(source, preset)
    padded = pad_vocab_size(preset.vocab_size, make_vocab_size_divisible_by=make_vocab_size_divisible_by,
                            tensor_model_parallel_size=tp)
    provenance = {"source": str(hf_path), "source_folder": str(source.resolve()),
                  "hf_config": hf_config, "tokenizer_size": tokenizer_size}
    with staged_folder(save) as tmp, single_process_megatron():
        model_state, strategy = _model_state(weights, preset, padded, streaming=streaming)
        release = checkpoint_dir(tmp, None)
        release.mkdir()
        args = CheckpointArgs(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                              padded_vocab_size=padded,
                              make_vocab_size_divisible_by=make_vocab_size_divisible_by,
                              tokenizer_type="HuggingFaceTokenizer", no_save_optim=True,
                              no_save_rng=True)
        state = {"model": model_state,
                 **common_state(args=args, model_config=preset, conversion=provenance)}
        dist_checkpointing.save(state, str(release), strategy)
        write_tracker(tmp, "release")
        (tmp / TOKENIZER_DIRNAME).mkdir()
        copy_tokenizer_files(source, tmp / TOKENIZER_DIRNAME,
                             (*TOKENIZER_FILES, GENERATION_CONFIG_FILENAME))
    print(f"converted {hf_path} ({preset.num_layers} layers, hidden {preset.hidden_size}, "
          f"vocabulary {preset.vocab_size} padded to {padded}, RoPE base {preset.rotary_base:g}"
          f"{', llama3 scaling' if preset.rope_scaling else ''}) into {save} in "
          f"{time.monotonic() - start:.1f}s; loadable at any TP/PP dividing "
          f"{preset.num_query_groups} query groups and {preset.num_layers} layers", flush=True)
    return Path(save)
