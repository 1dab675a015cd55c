"""Hugging Face ``config.json`` <-> ModelPreset for the Llama family (Llama-2/3/3.1, Mistral).

Reads both layouts of RoPE settings: transformers 4 (``rope_theta`` + ``rope_scaling``) and
transformers 5 (``rope_parameters``). Anything the megatron model would compute differently
(biases, sliding windows, MoE, other RoPE types or activations) is refused, never ignored.
The default training sequence length of a converted model is its context capped at 8192.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megatron_telecom.models.presets import ModelPreset

SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral"}
DEFAULT_SEQ_LENGTH_CAP = 8192


def read_hf_config(hf_path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of an HF folder as a dict (ValueError when absent or not JSON)."""
    path = Path(hf_path) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing: --hf-path must be a Hugging Face model folder") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): re-download the model") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def _rope_settings(config: dict[str, Any], where: str) -> dict[str, Any]:
    """RoPE base and llama3 scaling from either transformers layout."""
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    source = params if params.get("rope_type", "default") != "default" else scaling
    if rope_type == "default":
        return {"rotary_base": float(theta), "rope_scaling": False}
    if rope_type != "llama3":
        raise ValueError(f"{where}: RoPE type {rope_type!r} is not supported (only default and "
                         "llama3 scaling map onto megatron-core's RoPE)")
    missing = [k for k in ("factor", "low_freq_factor", "high_freq_factor",
                           "original_max_position_embeddings") if k not in source]
    if missing:
        raise ValueError(f"{where}: llama3 RoPE scaling lacks {', '.join(missing)}")
    return {
        "rotary_base": float(theta),
        "rope_scaling": True,
        "rope_scaling_factor": float(source["factor"]),
        "rope_scaling_low_freq_factor": float(source["low_freq_factor"]),
        "rope_scaling_high_freq_factor": float(source["high_freq_factor"]),
        "rope_scaling_original_max_position_embeddings": int(
            source["original_max_position_embeddings"]),
    }


def _refuse_unsupported(config: dict[str, Any], where: str) -> None:
    """ValueError naming every setting the megatron Llama model cannot reproduce."""
    archs = config.get("architectures") or []
    if len(archs) != 1 or archs[0] not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{where}: architecture {archs} is not supported; convert one of "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    problems = []
    if config.get("attention_bias") or config.get("mlp_bias"):
        problems.append("attention_bias/mlp_bias (biased projections)")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {config['hidden_act']!r} (only silu/SwiGLU)")
    if any(config.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")):
        problems.append("mixture-of-experts layers")
    window, context = config.get("sliding_window"), config.get("max_position_embeddings")
    if window is not None and context is not None and window < context:
        problems.append(f"sliding_window {window} < max_position_embeddings {context} "
                        "(sliding-window attention)")
    if problems:
        raise ValueError(f"{where}: unsupported {'; '.join(problems)}")


def _int_field(config: dict[str, Any], key: str, where: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def preset_from_hf_config(config: dict[str, Any], *, name: str) -> ModelPreset:
    """The ModelPreset of a Llama-family HF config (every field derived, not only named presets)."""
    where = f"{name} config.json"
    _refuse_unsupported(config, where)
    heads = _int_field(config, "num_attention_heads", where)
    hidden = _int_field(config, "hidden_size", where)
    head_dim = config.get("head_dim") or hidden // heads
    context = _int_field(config, "max_position_embeddings", where)
    return ModelPreset(
        name=name,
        num_layers=_int_field(config, "num_hidden_layers", where),
        hidden_size=hidden,
        ffn_hidden_size=_int_field(config, "intermediate_size", where),
        num_attention_heads=heads,
        num_query_groups=config.get("num_key_value_heads") or heads,
        vocab_size=_int_field(config, "vocab_size", where),
        seq_length=min(context, DEFAULT_SEQ_LENGTH_CAP),
        max_position_embeddings=context,
        norm_epsilon=float(config.get("rms_norm_eps", 1e-6)),
        untie_embeddings_and_output_weights=not config.get("tie_word_embeddings", False),
        head_dim=None if head_dim * heads == hidden else head_dim,
        hf_architecture=config["architectures"][0],
        **_rope_settings(config, where),
    )


def hf_config_from_preset(preset: ModelPreset, *, base: dict[str, Any] | None = None,
                          dtype: str = "float32") -> dict[str, Any]:
    """A transformers-5 ``config.json`` for ``preset``; ``base`` supplies token ids and extras."""
    architecture = preset.hf_architecture or "LlamaForCausalLM"
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": preset.rotary_base}
    if preset.rope_scaling:
        rope.update(rope_type="llama3", factor=preset.rope_scaling_factor,
                    low_freq_factor=preset.rope_scaling_low_freq_factor,
                    high_freq_factor=preset.rope_scaling_high_freq_factor,
                    original_max_position_embeddings=(
                        preset.rope_scaling_original_max_position_embeddings))
    kept = {k: v for k, v in (base or {}).items()
            if k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return {
        **kept,
        "architectures": [architecture],
        "model_type": SUPPORTED_ARCHITECTURES[architecture],
        "num_hidden_layers": preset.num_layers,
        "hidden_size": preset.hidden_size,
        "intermediate_size": preset.ffn_hidden_size,
        "num_attention_heads": preset.num_attention_heads,
        "num_key_value_heads": preset.num_query_groups,
        "head_dim": preset.kv_channels,
        "vocab_size": preset.vocab_size,
        "max_position_embeddings": preset.max_position_embeddings,
        "rms_norm_eps": preset.norm_epsilon,
        "rope_parameters": rope,
        "tie_word_embeddings": not preset.untie_embeddings_and_output_weights,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": preset.init_method_std,
        "use_cache": True,
        "dtype": dtype,
    }
