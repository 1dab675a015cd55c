"""Model FLOPs per iteration, counted the way Megatron-LM counts them (for TFLOP/s logging).

Megatron-LM (megatron/training/training.py, ``num_floating_point_operations``) counts the
GEMMs of a dense decoder: every GEMM runs three times (forward, data gradient, weight
gradient) at 2 FLOPs per multiply-add. Per token and layer:

- QKV projection ``h * (q + 2 kv)``, with q = kv_channels * heads, kv = kv_channels * groups;
- attention core ``q * s`` (QK^T and PV, each halved by the causal mask);
- output projection ``q * h``;
- MLP ``h * ffn * 3`` with SwiGLU (gate, up, down), ``* 2`` without;
- plus the output logits ``h * padded_vocab`` once per token.

Activation recomputation is not counted (these are model FLOPs, as in Megatron-LM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from megatron.core.transformer.transformer_config import TransformerConfig

__all__ = ["num_floating_point_operations"]

_FORWARD_BACKWARD = 3  # forward, backward data-gradient, backward weight-gradient GEMMs
_FMA = 2  # one multiply-add is two floating-point operations


def num_floating_point_operations(
    config: TransformerConfig, *, batch_size: int, seq_length: int, padded_vocab_size: int
) -> float:
    """FLOPs of one training step (forward + backward) over ``batch_size`` sequences.

    Divide by step time and device count for Megatron-LM's "TFLOP/s per GPU".
    """
    if getattr(config, "num_moe_experts", None) or getattr(config, "multi_latent_attention", False):
        raise ValueError("FLOPs formula covers dense GQA/MHA decoders only (no MoE, no MLA)")
    if batch_size < 1 or seq_length < 1 or padded_vocab_size < 1:
        raise ValueError("batch_size, seq_length and padded_vocab_size must be >= 1")
    hidden = config.hidden_size
    query_size = config.kv_channels * config.num_attention_heads
    groups = config.num_query_groups or config.num_attention_heads
    key_value_size = config.kv_channels * groups
    ffn_factor = 3 if config.gated_linear_unit else 2

    attention_per_layer = (
        hidden * (query_size + 2 * key_value_size)  # QKV projection
        + query_size * seq_length / 2 * 2  # QK^T and (QK^T)V under a causal mask
        + query_size * hidden  # output projection
    )
    mlp_per_layer = hidden * config.ffn_hidden_size * ffn_factor
    logits = hidden * padded_vocab_size
    per_token = _FORWARD_BACKWARD * _FMA * (
        config.num_layers * (attention_per_layer + mlp_per_layer) + logits
    )
    return float(batch_size * seq_length * per_token)
