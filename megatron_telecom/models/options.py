"""FP8 and activation-recompute options of a model (Megatron-LM's --fp8-* / --recompute-* flags).

Kept free of torch and megatron imports: the pretraining config tree nests them, and flags must
parse (and fail) before anything heavy is imported. ``models.transformer_config`` turns them into
TransformerConfig fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DType = Literal["float32", "bfloat16", "float16"]
"""Floating-point formats a model is written or loaded in (conversion, evaluation)."""
TransformerImpl = Literal["transformer_engine", "local"]
"""Layer implementation: Transformer Engine's spec, or megatron-core's local one."""
AttentionBackend = Literal["auto", "sdpa", "local"]
"""Core attention: auto (TE's with TE, else sdpa), torch SDPA kernels, or megatron's own."""
ATTENTION_BACKENDS: tuple[str, ...] = get_args(AttentionBackend)
Fp8Format = Literal["e4m3", "hybrid"]
# megatron-core 0.16.1's Fp8Recipe minus "custom" (that one needs a user quantizer factory).
Fp8Recipe = Literal["delayed", "tensorwise", "mxfp8", "blockwise"]
Fp8AmaxComputeAlgo = Literal["max", "most_recent"]
RecomputeGranularity = Literal["full", "selective"]
RecomputeMethod = Literal["uniform", "block"]


@dataclass(frozen=True, kw_only=True)
class Fp8Options:
    """FP8 training with Transformer Engine (Hopper or newer GPUs)."""

    fp8_format: Fp8Format | None = None
    """FP8 format: e4m3 everywhere, or hybrid (e4m3 forward, e5m2 gradients); unset = off."""
    fp8_recipe: Fp8Recipe = "delayed"
    """FP8 scaling recipe (mxfp8 needs Blackwell, blockwise/tensorwise a newer TE)."""
    fp8_margin: int = 0
    """FP8 scaling-factor margin (power of two)."""
    fp8_amax_history_len: int = 1
    """FP8 amax history window of the delayed recipe."""
    fp8_amax_compute_algo: Fp8AmaxComputeAlgo = "most_recent"
    """How the delayed recipe reduces the amax history."""


@dataclass(frozen=True, kw_only=True)
class RecomputeOptions:
    """Activation recomputation: trade compute for activation memory."""

    recompute_granularity: RecomputeGranularity | None = None
    """Recompute full layers, or only the attention core (selective); unset = off."""
    recompute_method: RecomputeMethod | None = None
    """Full recompute only: uniform groups of layers, or the first N layers per stage (block)."""
    recompute_num_layers: int | None = None
    """Full recompute only: layers per group (uniform) or per stage (block)."""
