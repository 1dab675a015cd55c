"""Megatron torch_dist checkpoint (any TP/PP, converted or trained) -> Hugging Face folder.

One process loads the global tensors into the unsplit model (no TP x PP launch), then writes
each HF tensor straight into sharded safetensors: vocabulary padding stripped, Q/K/V and
gate/up split back. Beside the weights: ``config.json`` from the recorded model config,
``generation_config.json``, the tokenizer files and a model card (``README.md``) with
provenance. The tokenizer comes from the checkpoint's ``tokenizer/`` folder, else from the
converted checkpoint it was trained from (``--load``), else from its ``--tokenizer-model``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from megatron_telecom.convert import mapping
from megatron_telecom.convert.hf_config import hf_config_from_preset
from megatron_telecom.convert.hf_io import TOKENIZER_FILES, copy_tokenizer_files, write_sharded
from megatron_telecom.convert.megatron_model import build_unsplit_model, single_process_megatron
from megatron_telecom.convert.model_card import model_card
from megatron_telecom.convert.output import staged_folder
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.runtime.cpu_shim import install_cpu_shim

TRACKER_FILENAME = "latest_checkpointed_iteration.txt"
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_megatron_checkpoint(path: str | Path) -> bool:
    """True for a --save folder (with a tracker) or one of its ``iter_*``/``release`` folders."""
    path = Path(path)
    return (path / TRACKER_FILENAME).is_file() or (
        (path / "metadata.json").is_file() and (path / "common.pt").is_file())


def checkpoint_folder(load: str | Path) -> tuple[Path, Path]:
    """(root --save folder, the checkpoint folder to read) for a root or an ``iter_*`` folder."""
    from megatron_telecom.training.checkpointing import latest_checkpoint

    load = Path(load)
    if (load / TRACKER_FILENAME).is_file():
        return load, latest_checkpoint(load)[0]
    if is_megatron_checkpoint(load):
        return load.parent, load
    raise ValueError(f"{load} is not a megatron checkpoint: give a --save folder (with "
                     f"{TRACKER_FILENAME}) or one of its iter_* folders")


def _load_model(folder: Path, preset: ModelPreset, padded_vocab: int) -> torch.nn.Module:
    """The unsplit model with the checkpoint's weights (any TP/PP it was saved at)."""
    from megatron.core import dist_checkpointing

    from megatron_telecom.training.checkpointing import check_shapes

    model = build_unsplit_model(preset, padded_vocab)
    state = {"model": model.sharded_state_dict()}
    check_shapes(folder, state)
    loaded = dist_checkpointing.load(state, str(folder))
    model.load_state_dict(loaded["model"])
    return model


def _hf_tensors(model: torch.nn.Module, preset: ModelPreset, dtype: torch.dtype):  # noqa: ANN202
    """(specs in HF order, produce(name) -> that HF tensor) over the loaded model."""
    params = model.state_dict()
    sources: dict[str, tuple[str, int]] = {}
    for megatron_name, hf_names in mapping.tensor_names(preset):
        sources.update({hf: (megatron_name, i) for i, hf in enumerate(hf_names)})
    shapes = mapping.expected_hf_shapes(preset)
    specs = [(name, shapes[name], dtype) for name in sources]

    def produce(name: str) -> torch.Tensor:
        megatron_name, index = sources[name]
        tensor = mapping.split(megatron_name, params[megatron_name], preset)[index]
        if megatron_name in (mapping.EMBEDDING[0], mapping.OUTPUT_LAYER[0]):
            tensor = tensor[: preset.vocab_size]  # strip the vocabulary padding
        return tensor.to(dtype)

    return specs, produce


def _origin(root: Path, args: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """(conversion provenance, tokenizer folder): this checkpoint's or the one it started from."""
    from megatron_telecom.convert.hf_to_mcore import CONVERSION_KEY, TOKENIZER_DIRNAME
    from megatron_telecom.training.checkpointing import latest_checkpoint, read_common_state

    for candidate in (root, Path(args["load"]) if args.get("load") else None):
        if candidate is not None and (candidate / TOKENIZER_DIRNAME).is_dir():
            try:
                state = read_common_state(latest_checkpoint(candidate)[0])
            except ValueError:
                state = {}
            return state.get(CONVERSION_KEY) or {}, candidate / TOKENIZER_DIRNAME
    tokenizer = args.get("tokenizer_model")
    if tokenizer and Path(tokenizer).is_dir():
        return {}, Path(tokenizer)
    return {}, None


def _write_metadata(tmp: Path, preset: ModelPreset, common: dict[str, Any], root: Path,
                    folder: Path, dtype_name: str) -> None:
    """config.json, generation_config.json, tokenizer files and the model card."""
    args = common.get("args") or {}
    provenance, tokenizer = _origin(root, args)
    config = hf_config_from_preset(preset, base=provenance.get("hf_config"), dtype=dtype_name)
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    copied = copy_tokenizer_files(tokenizer, tmp, (*TOKENIZER_FILES, "generation_config.json")
                                  ) if tokenizer else []
    if "generation_config.json" not in copied:
        generation = {k: config[k] for k in ("bos_token_id", "eos_token_id") if k in config}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n",
                                                    encoding="utf-8")
    if not any(name in copied for name in TOKENIZER_FILES):
        print(f"warning: no tokenizer files found for {folder}: the export has weights and "
              "config only; copy the base model's tokenizer files beside them", flush=True)
    (tmp / "README.md").write_text(model_card(preset, common, folder, provenance),
                                   encoding="utf-8")


def export_mcore_to_hf(load: str | Path, save: str | Path, *, dtype: str = "float32",
                       max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Export the megatron checkpoint at ``load`` (any TP/PP) as an HF folder ``save``; returns it."""
    from megatron_telecom.models.presets import preset_from_dict

    install_cpu_shim()  # before megatron's first import
    from megatron_telecom.training.checkpointing import MODEL_CONFIG_KEY, read_common_state

    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    root, folder = checkpoint_folder(load)
    common = read_common_state(folder)
    record = common.get(MODEL_CONFIG_KEY)
    if record is None:
        raise ValueError(f"{folder} records no model config (written by Megatron-LM or an older "
                         "megatron-telecom): it cannot be exported without knowing its model")
    preset = preset_from_dict(record, where=str(folder))
    padded = (common.get("args") or {}).get("padded_vocab_size") or preset.vocab_size
    with staged_folder(save) as tmp:
        with single_process_megatron():
            model = _load_model(folder, preset, int(padded))
        specs, produce = _hf_tensors(model, preset, DTYPES[dtype])
        with torch.no_grad():
            write_sharded(tmp, specs, produce, max_shard_bytes)
        del model
        _write_metadata(tmp, preset, common, root, folder, dtype)
    print(f"exported {folder} ({preset.num_layers} layers, vocabulary {preset.vocab_size}) "
          f"to {save}", flush=True)
    return Path(save)
