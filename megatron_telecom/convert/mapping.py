"""Tensor names and layouts: Hugging Face Llama/Mistral <-> megatron-core GPTModel (local spec).

Megatron fuses Q/K/V into ``linear_qkv`` grouped per query group — for each KV head g:
[the heads/groups query heads of g; k_g; v_g] — and gate/up into ``linear_fc1`` as
[gate; up]. Both sides use the same (rotate-half) RoPE convention, so no row permutation is
needed. The megatron names are those of an unsplit model (TP=PP=1) in one process; torch_dist
turns them into global tensors every TP/PP layout loads.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from megatron_telecom.models.presets import ModelPreset

# megatron (under decoder.layers.{i}.) -> HF tensors (under model.layers.{i}.) it is made of
LAYER_TENSORS: dict[str, tuple[str, ...]] = {
    "input_layernorm.weight": ("input_layernorm.weight",),
    "self_attention.linear_qkv.weight": (
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "self_attention.linear_proj.weight": ("self_attn.o_proj.weight",),
    "pre_mlp_layernorm.weight": ("post_attention_layernorm.weight",),
    "mlp.linear_fc1.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "mlp.linear_fc2.weight": ("mlp.down_proj.weight",),
}
EMBEDDING = ("embedding.word_embeddings.weight", "model.embed_tokens.weight")
FINAL_NORM = ("decoder.final_layernorm.weight", "model.norm.weight")
OUTPUT_LAYER = ("output_layer.weight", "lm_head.weight")
# HF tensors that carry no weights of their own (recomputed buffers)
IGNORED_HF_SUFFIXES = ("rotary_emb.inv_freq",)


def tensor_names(preset: ModelPreset) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(megatron name, HF names) for every weight of the model, in HF's order."""
    yield EMBEDDING[0], (EMBEDDING[1],)
    for layer in range(preset.num_layers):
        for megatron, hf in LAYER_TENSORS.items():
            yield (f"decoder.layers.{layer}.{megatron}",
                   tuple(f"model.layers.{layer}.{name}" for name in hf))
    yield FINAL_NORM[0], (FINAL_NORM[1],)
    if preset.untie_embeddings_and_output_weights:
        yield OUTPUT_LAYER[0], (OUTPUT_LAYER[1],)


def _qkv_group_sizes(preset: ModelPreset) -> tuple[int, int, int]:
    """Rows of (queries, key, value) per query group in ``linear_qkv``."""
    per_group = preset.num_attention_heads // preset.num_query_groups
    return per_group * preset.kv_channels, preset.kv_channels, preset.kv_channels


def merge(name: str, parts: list[torch.Tensor], preset: ModelPreset) -> torch.Tensor:
    """The megatron tensor ``name`` built from its HF parts (see ``tensor_names``)."""
    if name.endswith("linear_qkv.weight"):
        groups, hidden = preset.num_query_groups, parts[0].shape[-1]
        q, k, v = (part.reshape(groups, -1, hidden) for part in parts)
        return torch.cat([q, k, v], dim=1).reshape(-1, hidden)
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts, dim=0)


def split(name: str, tensor: torch.Tensor, preset: ModelPreset) -> list[torch.Tensor]:
    """The HF parts of megatron tensor ``name`` (inverse of ``merge``; views where possible)."""
    if name.endswith("linear_qkv.weight"):
        hidden = tensor.shape[-1]
        grouped = tensor.reshape(preset.num_query_groups, -1, hidden)
        return [part.reshape(-1, hidden) for part in grouped.split(_qkv_group_sizes(preset), dim=1)]
    if name.endswith("linear_fc1.weight"):
        return list(tensor.chunk(2, dim=0))
    return [tensor]


def expected_hf_shapes(preset: ModelPreset) -> dict[str, tuple[int, ...]]:
    """Shape of every HF tensor the preset implies (to name a mismatch before converting)."""
    h, d, ffn = preset.hidden_size, preset.kv_channels, preset.ffn_hidden_size
    q, kv = preset.num_attention_heads * d, preset.num_query_groups * d
    per_layer = {
        "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (q, h), "self_attn.k_proj.weight": (kv, h),
        "self_attn.v_proj.weight": (kv, h), "self_attn.o_proj.weight": (h, q),
        "mlp.gate_proj.weight": (ffn, h), "mlp.up_proj.weight": (ffn, h),
        "mlp.down_proj.weight": (h, ffn),
    }
    shapes = {EMBEDDING[1]: (preset.vocab_size, h), FINAL_NORM[1]: (h,)}
    if preset.untie_embeddings_and_output_weights:
        shapes[OUTPUT_LAYER[1]] = (preset.vocab_size, h)
    for layer in range(preset.num_layers):
        shapes.update({f"model.layers.{layer}.{k}": v for k, v in per_layer.items()})
    return shapes
