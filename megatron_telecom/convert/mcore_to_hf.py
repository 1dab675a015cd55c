"""Megatron torch_dist checkpoint (any TP/PP, converted or trained) -> Hugging Face folder.

One process (no TP x PP launch) reads each global tensor from the checkpoint when the sharded
safetensors writer needs it, one layer's Q/K/V or [gate; up] at a time, and writes its HF parts:
vocabulary padding stripped, Q/K/V and gate/up split back. Memory holds about one layer besides
the libraries. ``streaming=False`` is the previous path (the whole unsplit model loaded by
megatron first; ~1.2x the fp32 bytes), kept as the reference the streaming output is tested
bit for bit against; ``verify`` still loads the whole model that way. Beside the weights:
``config.json`` from the recorded model config, ``generation_config.json``, the tokenizer files and a model card (``README.md``) with
provenance. The tokenizer comes from the checkpoint's ``tokenizer/`` folder, else from the
converted checkpoint it was trained from (``--load``), else from its ``--tokenizer-model``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from megatron_telecom.atomic import staged_folder
from megatron_telecom.bundled import is_bundled, resolve_hf_path
from megatron_telecom.convert import mapping
from megatron_telecom.convert.hf_config import hf_config_from_preset
from megatron_telecom.convert.hf_io import TOKENIZER_FILES, copy_tokenizer_files, write_sharded
from megatron_telecom.convert.megatron_model import build_unsplit_model, single_process_megatron
from megatron_telecom.convert.model_card import lineage, model_card
from megatron_telecom.models.checkpoint_format import (
    CONVERSION_KEY,
    TOKENIZER_DIRNAME,
    CheckpointArgs,
    StoredCheckpoint,
    checkpoint_folder,
    open_checkpoint,
    read_common_state,
)
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.models.tokenizer_record import check_tokenizer_folder
from megatron_telecom.training.model_preparation import lora_record

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def read_checkpoint_model(folder: Path) -> tuple[ModelPreset, int, StoredCheckpoint]:
    """(recorded model config, padded vocabulary, the checkpoint) of checkpoint ``folder``."""
    stored = StoredCheckpoint(path=folder, release=folder.name == "release",
                              common=read_common_state(folder))
    preset = stored.model
    if preset is None:
        raise ValueError(f"{folder} records no model config (written by Megatron-LM or an older "
                         "megatron-telecom): it cannot be exported without knowing its model")
    return preset, int(stored.args.padded_vocab_size or preset.vocab_size), stored


def load_unsplit_model(folder: Path, preset: ModelPreset, padded_vocab: int) -> torch.nn.Module:
    """The unsplit model with the checkpoint's weights (any TP/PP it was saved at).

    Call inside ``single_process_megatron()``. Every tensor is read straight into the model's
    own storage: the [gate; up] factory is applied up front, so its halves load into views of
    the fc1 weight instead of being concatenated into a second copy.
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import apply_factories

    from megatron_telecom.models.sharded_state import check_shapes  # imports megatron

    model = build_unsplit_model(preset, padded_vocab)
    state = {"model": model.sharded_state_dict()}
    apply_factories(state)
    check_shapes(folder, state)
    dist_checkpointing.load(state, str(folder))  # in place: the data are the parameters
    return model


def _streamed_tensors(folder: Path, preset: ModelPreset, padded_vocab: int
                     ) -> Callable[[str], torch.Tensor]:
    """lookup(megatron name) -> that tensor of the unsplit model, read from the checkpoint when
    asked (the embedding and output layer without their padding rows). Call inside
    ``single_process_megatron()``."""
    from megatron_telecom.convert.dist_ckpt import DistCheckpointReader, meta_sharded_state
    from megatron_telecom.models.sharded_state import check_shapes  # imports megatron

    state = meta_sharded_state(preset, padded_vocab)
    check_shapes(folder, state)
    reader = DistCheckpointReader(folder)

    def lookup(name: str) -> torch.Tensor:
        if isinstance(state[name], list):  # megatron's [gate, up] halves of fc1
            return torch.cat([reader.read(half) for half in state[name]])
        vocab = name in (mapping.EMBEDDING[0], mapping.OUTPUT_LAYER[0])
        return reader.read(state[name], rows=preset.vocab_size if vocab else None)

    return lookup


def _hf_tensors(lookup: Callable[[str], torch.Tensor], preset: ModelPreset,  # noqa: ANN202
                dtype: torch.dtype):
    """(specs in HF order, produce(name) -> that HF tensor), ``lookup(megatron name)`` giving
    the megatron tensors (the last one is kept for its other HF parts: Q/K/V, gate/up)."""
    lookup = functools.lru_cache(maxsize=1)(lookup)
    sources: dict[str, tuple[str, int]] = {}
    for megatron_name, hf_names in mapping.tensor_names(preset):
        sources.update({hf: (megatron_name, i) for i, hf in enumerate(hf_names)})
    shapes = mapping.expected_hf_shapes(preset)
    specs = [(name, shapes[name], dtype) for name in sources]

    def produce(name: str) -> torch.Tensor:
        megatron_name, index = sources[name]
        tensor = mapping.split(megatron_name, lookup(megatron_name), preset)[index]
        if megatron_name in (mapping.EMBEDDING[0], mapping.OUTPUT_LAYER[0]):
            tensor = tensor[: preset.vocab_size]  # strip the vocabulary padding
        return tensor.to(dtype)

    return specs, produce


def _origin(root: Path, args: CheckpointArgs) -> tuple[dict[str, Any], Path | None]:
    """(conversion provenance, tokenizer folder): this checkpoint's or the one it started from."""
    chain = [root] + ([Path(args.load)] if args.load else [])
    try:  # a later stage (SFT after CPT) finds the converted base further back
        chain += [checkpoint_folder(stage.path)[0] for stage in lineage(open_checkpoint(root))[1:]]
    except ValueError:
        pass
    for candidate in chain:
        if (candidate / TOKENIZER_DIRNAME).is_dir():
            try:
                state = open_checkpoint(candidate).common
            except ValueError:
                state = {}
            return state.get(CONVERSION_KEY) or {}, candidate / TOKENIZER_DIRNAME
    tokenizer = args.tokenizer_model
    if tokenizer and is_bundled(tokenizer):
        tokenizer = str(resolve_hf_path(tokenizer))
    if tokenizer and Path(tokenizer).is_dir():
        return {}, Path(tokenizer)
    return {}, None


def _write_metadata(tmp: Path, preset: ModelPreset, stored: StoredCheckpoint, root: Path,
                    dtype_name: str) -> None:
    """config.json, generation_config.json, tokenizer files and the model card."""
    folder = stored.path
    provenance, tokenizer = _origin(root, stored.args)
    config = hf_config_from_preset(preset, base=provenance.get("hf_config"), dtype=dtype_name)
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if tokenizer:  # a resized vocabulary leaves with its own tokenizer only
        check_tokenizer_folder(stored.common, tokenizer, where=f"checkpoint {folder}")
    copied = copy_tokenizer_files(tokenizer, tmp, (*TOKENIZER_FILES, "generation_config.json")
                                  ) if tokenizer else []
    if "generation_config.json" not in copied:
        generation = {k: config[k] for k in ("bos_token_id", "eos_token_id") if k in config}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n",
                                                    encoding="utf-8")
    if not any(name in copied for name in TOKENIZER_FILES):
        print(f"warning: no tokenizer files found for {folder}: the export has weights and "
              "config only; copy the base model's tokenizer files beside them", flush=True)
    (tmp / "README.md").write_text(model_card(preset, stored, provenance),
                                   encoding="utf-8")


def export_mcore_to_hf(load: str | Path, save: str | Path, *, dtype: str = "float32",
                       max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                       streaming: bool = True) -> Path:
    """Export the megatron checkpoint at ``load`` (any TP/PP) as an HF folder ``save``; returns it.

    ``streaming=False`` takes the previous in-memory path (same output, ~1.2x the model's bytes).
    """
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    root, folder = checkpoint_folder(load)
    preset, padded, stored = read_checkpoint_model(folder)
    if lora_record(stored) is not None:  # adapters only: the model is their base with them merged
        from megatron_telecom.convert.lora import export_merged

        return export_merged(load, save, dtype=dtype, max_shard_bytes=max_shard_bytes)
    with staged_folder(save) as tmp:
        with single_process_megatron(), torch.no_grad():
            if streaming:
                lookup = _streamed_tensors(folder, preset, padded)
            else:
                lookup = load_unsplit_model(folder, preset, padded).state_dict().__getitem__
            specs, produce = _hf_tensors(lookup, preset, DTYPES[dtype])
            write_sharded(tmp, specs, produce, max_shard_bytes)
            del lookup, produce
        _write_metadata(tmp, preset, stored, root, dtype)
    print(f"exported {folder} ({preset.num_layers} layers, vocabulary {preset.vocab_size}) "
          f"to {save}", flush=True)
    return Path(save)
