"""LoRA adapter checkpoints <-> Hugging Face PEFT, and the merged model.

An adapter-only checkpoint (``training/model_preparation.py``) is read in one process, at any
TP/PP it was saved at, into the unsplit model with its adapters (``models/lora.py``):
- ``export_peft_adapter``: ``adapter_config.json`` + ``adapter_model.safetensors`` that
  ``peft.PeftModel.from_pretrained`` loads on the base HF model (the base's HF names: q_proj ...
  down_proj). The canonical variant maps one to one; the fused variant is written exactly in
  canonical form: its A duplicated for q/k/v (gate/up), its B split by rows like the fused weight.
- ``export_merged``: the base weights plus ``alpha / r * B A`` computed and added in fp32, then
  cast to --dtype, written as ``mcore-to-hf`` writes a model. The base is the recorded one (or
  ``base``, checked against the recorded identity).
Both carry the model card of the stages, with a LoRA section. ``load_peft_adapter`` is the way back:
it starts a run's canonical adapters from a PEFT folder (``--lora-init-adapter``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from megatron_telecom.atomic import staged_folder
from megatron_telecom.convert import mapping
from megatron_telecom.convert.hf_io import write_sharded
from megatron_telecom.convert.mcore_to_hf import (
    DEFAULT_MAX_SHARD_BYTES,
    DTYPES,
    _hf_tensors,
    _origin,
    _write_metadata,
    read_checkpoint_model,
)
from megatron_telecom.convert.megatron_model import build_unsplit_model, single_process_megatron
from megatron_telecom.convert.model_card import model_card
from megatron_telecom.models.checkpoint_format import StoredCheckpoint, checkpoint_folder
from megatron_telecom.models.options import LORA_PARTS, LoraOptions
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.training.model_preparation import lora_record, recorded_base

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HF_MODULE = {"linear_qkv": "self_attn", "linear_proj": "self_attn", "linear_fc1": "mlp", "linear_fc2": "mlp"}
HF_PROJECTION = {("linear_qkv", "q"): "q_proj", ("linear_qkv", "k"): "k_proj", ("linear_qkv", "v"): "v_proj",
                 ("linear_proj", ""): "o_proj", ("linear_fc1", "gate"): "gate_proj",
                 ("linear_fc1", "up"): "up_proj", ("linear_fc2", ""): "down_proj"}


def peft_key(layer: int, linear: str, part: str, matrix: str) -> str:
    """PEFT's name of an adapter matrix on a Llama/Mistral HF model (``layer`` counts from 0)."""
    return (f"base_model.model.model.layers.{layer}.{HF_MODULE[linear]}."
            f"{HF_PROJECTION[(linear, part)]}.lora_{matrix}.weight")


def options_of(stored: StoredCheckpoint) -> LoraOptions:
    """The LoRA options an adapter checkpoint recorded; ValueError for any other checkpoint."""
    record = lora_record(stored)
    if record is None:
        raise ValueError(f"{stored.path} is not a LoRA adapter checkpoint (no LoRA record): "
                         "export it with mcore-to-hf")
    options = dict(record["options"])
    options["lora_target_modules"] = tuple(options["lora_target_modules"])
    return LoraOptions(**{**options, "lora_init_adapter": None})


def _adapters(model: torch.nn.Module) -> list[tuple[int, Any]]:
    """(layer index from 0, LoraAdapter) of every adapter of the unsplit model."""
    from megatron_telecom.models.lora import LoraAdapter

    return [(layer.layer_number - 1, module) for layer in model.decoder.layers
            for module in layer.modules() if isinstance(module, LoraAdapter)]


def _load_entries(model: torch.nn.Module, folder: Path, keep: Any) -> None:
    """Load the model entries ``keep(name)`` selects from checkpoint ``folder``, in place."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import apply_factories

    from megatron_telecom.models.sharded_state import check_shapes

    state = {"model": {k: v for k, v in model.sharded_state_dict().items() if keep(k)}}
    apply_factories(state)
    check_shapes(folder, state)
    dist_checkpointing.load(state, str(folder))


def _unsplit_with_adapters(stored: StoredCheckpoint, preset: ModelPreset, padded: int, options: LoraOptions,
                           *, base: StoredCheckpoint | None) -> torch.nn.Module:
    """The unsplit fp32 model with the checkpoint's adapters (and ``base``'s weights when given)."""
    from megatron_telecom.models.lora import add_lora_adapters, is_adapter_key

    model = build_unsplit_model(preset, padded)
    add_lora_adapters(model, options, seed=0)
    _load_entries(model, stored.path, is_adapter_key)
    if base is not None:
        _load_entries(model, base.path, lambda key: not is_adapter_key(key))
    return model


def peft_state(model: torch.nn.Module, preset: ModelPreset) -> dict[str, torch.Tensor]:
    """PEFT's tensors of every adapter; the fused ones in canonical form."""
    tensors: dict[str, torch.Tensor] = {}
    for layer, adapter in _adapters(model):
        for part in adapter.parts:
            a, b = (t.detach().float() for t in adapter.pair(part))
            if part or adapter.linear not in LORA_PARTS:
                pieces = [(part, b)]
            else:  # fused: B's rows in the fused weight's layout, split as that weight is
                name = f"decoder.layers.{layer}.{'self_attention' if adapter.linear == 'linear_qkv' else 'mlp'}.{adapter.linear}.weight"
                pieces = list(zip(LORA_PARTS[adapter.linear], mapping.split(name, b, preset), strict=True))
            for projection, rows in pieces:
                tensors[peft_key(layer, adapter.linear, projection, "A")] = a.clone().contiguous()
                tensors[peft_key(layer, adapter.linear, projection, "B")] = rows.clone().contiguous()
    return tensors


def peft_config(options: LoraOptions, tensors: dict[str, torch.Tensor], base_model: str | None) -> dict[str, Any]:
    """adapter_config.json for peft 0.21's LoraConfig."""
    targets = sorted({key.split(".")[-3] for key in tensors})
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
            "r": options.lora_rank, "lora_alpha": options.lora_alpha, "lora_dropout": options.lora_dropout,
            "target_modules": targets, "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
            "use_dora": False, "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
            "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}}


def _card(preset: ModelPreset, stored: StoredCheckpoint, provenance: dict, options: LoraOptions,
          *, what: str) -> str:
    """The stages' model card with a LoRA section."""
    base = lora_record(stored)["base"]
    return model_card(preset, stored, provenance) + "\n" + "\n".join([
        "## LoRA", "",
        f"- {what}",
        f"- rank {options.lora_rank}, alpha {options.lora_alpha:g} (scaling {options.scaling:g}), dropout "
        f"{options.lora_dropout:g}, {options.lora_variant} variant on {', '.join(options.lora_target_modules)}",
        f"- base checkpoint: `{base['path']}` (iteration {base['iteration']}, common-state sha256 {base['sha256']})",
        ""])


def export_peft_adapter(load: str | Path, save: str | Path) -> Path:
    """Write the adapters of checkpoint ``load`` as a PEFT adapter folder ``save``."""
    from safetensors.torch import save_file

    root, folder = checkpoint_folder(load)
    preset, padded, stored = read_checkpoint_model(folder)
    options = options_of(stored)
    with staged_folder(save) as tmp:
        with single_process_megatron():
            model = _unsplit_with_adapters(stored, preset, padded, options, base=None)
        tensors = peft_state(model, preset)
        provenance, _ = _origin(root, stored.args)
        base_model = provenance.get("source_folder") or provenance.get("source")
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(peft_config(options, tensors, base_model), indent=2) + "\n",
                                          encoding="utf-8")
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / "README.md").write_text(_card(preset, stored, provenance, options, what=(
            f"a PEFT adapter ({len(tensors) // 2} A/B pairs): load it with "
            f"`PeftModel.from_pretrained(base_model, \"{Path(save).name}\")` on `{base_model}`")),
            encoding="utf-8")
    print(f"exported the LoRA adapters of {folder} ({options.lora_variant}, rank {options.lora_rank}) as a "
          f"PEFT adapter to {save}", flush=True)
    return Path(save)


def merge_adapters(model: torch.nn.Module) -> None:
    """Add every adapter's ``scaling * B A`` to its linear's weight, computed in fp32."""
    from megatron_telecom.models.lora import ADAPTER_SUFFIX

    with torch.no_grad():
        for layer in model.decoder.layers:
            for name, adapter in list(layer.named_modules()):
                if not name.endswith(ADAPTER_SUFFIX):
                    continue
                parent = layer.get_submodule(name.rsplit(".", 1)[0])
                weight = getattr(parent, adapter.linear).weight  # [out, in]
                eye = torch.eye(weight.shape[1], dtype=torch.float32).unsqueeze(1)  # [in, 1, in]
                delta = adapter.float()(eye)[:, 0, :].t()  # [out, in]: adapter(e_j) is column j
                weight.copy_((weight.float() + delta).to(weight.dtype))


def export_merged(load: str | Path, save: str | Path, *, base: str | Path | None = None,
                  dtype: str = "float32", max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write the base with the adapters of checkpoint ``load`` merged in as an HF model folder ``save``."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    root, folder = checkpoint_folder(load)
    preset, padded, stored = read_checkpoint_model(folder)
    options = options_of(stored)
    base_checkpoint = recorded_base(stored, base=base)  # ValueError: gone, or not the recorded base
    with staged_folder(save) as tmp:
        with single_process_megatron():
            model = _unsplit_with_adapters(stored, preset, padded, options, base=base_checkpoint)
            merge_adapters(model.eval())
        specs, produce = _hf_tensors(model.state_dict().__getitem__, preset, DTYPES[dtype])
        with torch.no_grad():
            write_sharded(tmp, specs, produce, max_shard_bytes)
        del model
        _write_metadata(tmp, preset, stored, root, dtype)
        provenance, _ = _origin(root, stored.args)
        (tmp / "README.md").write_text(_card(preset, stored, provenance, options, what=(
            f"merged: base + alpha/r * B A added in float32, then cast to {dtype}")), encoding="utf-8")
    print(f"exported {folder} merged into its base {base_checkpoint.path} to {save}", flush=True)
    return Path(save)


def load_peft_adapter(model: list, folder: str | Path, options: LoraOptions) -> None:
    """Set the canonical adapters of ``model``'s chunks (any TP/PP) from PEFT adapter ``folder``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if options.lora_variant != "canonical":
        raise ValueError("--lora-init-adapter starts canonical adapters only (PEFT's own layout): "
                         "add --lora-variant canonical")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except (OSError, ValueError) as err:
        raise ValueError(f"--lora-init-adapter {folder}: not a PEFT adapter folder ({err})") from None
    if config.get("r") != options.lora_rank or float(config.get("lora_alpha", 0)) != options.lora_alpha:
        raise ValueError(f"--lora-init-adapter {folder} has r={config.get('r')}, lora_alpha={config.get('lora_alpha')}: "
                         f"give --lora-rank {config.get('r')} --lora-alpha {config.get('lora_alpha')}")
    from megatron.core import parallel_state

    from megatron_telecom.training.checkpointing import unwrap_model

    tp, rank = parallel_state.get_tensor_model_parallel_world_size(), parallel_state.get_tensor_model_parallel_rank()
    with torch.no_grad():
        for chunk in model:
            for layer, adapter in _adapters(unwrap_model(chunk)):
                for part in adapter.parts:
                    a, b = adapter.pair(part)
                    keys = [peft_key(layer, adapter.linear, part, m) for m in ("A", "B")]
                    missing = [k for k in keys if k not in tensors]
                    if missing:
                        raise ValueError(f"--lora-init-adapter {folder} has no {missing[0]}: its target modules "
                                         "differ from --lora-target-modules")
                    full_a, full_b = tensors[keys[0]], tensors[keys[1]]
                    a.copy_(full_a if adapter.column else full_a.chunk(tp, dim=1)[rank])
                    b.copy_(full_b.chunk(tp, dim=0)[rank] if adapter.column else full_b)
