"""FP8 and activation-recompute options of a model (Megatron-LM's --fp8-* / --recompute-* flags).

Kept free of torch and megatron imports: the pretraining config tree nests them, and flags must
parse (and fail) before anything heavy is imported. ``models.transformer_config`` turns them into
TransformerConfig fields.
"""

from __future__ import annotations

import importlib.util
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


LoraVariant = Literal["canonical", "fused"]
LORA_LINEARS: tuple[str, ...] = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
"""megatron-core's linears of a decoder layer that take adapters."""
LORA_PARTS: dict[str, tuple[str, ...]] = {"linear_qkv": ("q", "k", "v"), "linear_fc1": ("gate", "up")}
"""The HF projections a fused megatron linear holds (canonical adapters: one per projection)."""
LORA_HF_NAMES: dict[str, tuple[str, str]] = {
    "q_proj": ("linear_qkv", "q"), "k_proj": ("linear_qkv", "k"), "v_proj": ("linear_qkv", "v"),
    "o_proj": ("linear_proj", ""), "gate_proj": ("linear_fc1", "gate"),
    "up_proj": ("linear_fc1", "up"), "down_proj": ("linear_fc2", ""),
}
"""HF PEFT target-module names -> (megatron linear, projection; "" = the whole linear)."""


def qlora_refusal(bits: int) -> str:
    """Why a ``bits``-bit frozen base (QLoRA) is refused here, in one line. A 4-bit base needs a
    4-bit matmul kernel (bitsandbytes' NF4, CUDA only); with one installed it is still refused:
    megatron-core's parallel linears would need a quantised weight path we have not built."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return (f"--lora-base-bits {bits} (QLoRA): no 4-bit kernel on this machine (it needs bitsandbytes "
                "on a CUDA GPU); leave it out to train the adapters on the full-precision base")
    return (f"--lora-base-bits {bits} (QLoRA): a 4-bit base on megatron-core's parallel linears is not "
            "built yet; leave it out to train the adapters on the full-precision base")


@dataclass(frozen=True, kw_only=True)
class LoraOptions:
    """LoRA adapters on a frozen base (PEFT's LoRA on megatron-core's parallel linears)."""

    lora_rank: int | None = None
    """Train LoRA adapters of this rank on the frozen base weights; unset = full-parameter training."""
    lora_alpha: float = 32.0
    """LoRA alpha: adapter outputs are scaled by alpha / rank (PEFT's lora_alpha)."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input (PEFT's lora_dropout)."""
    lora_target_modules: tuple[str, ...] = LORA_LINEARS
    """Adapted linears: megatron's linear_qkv linear_proj linear_fc1 linear_fc2, or (canonical) HF's q_proj k_proj v_proj o_proj gate_proj up_proj down_proj."""
    lora_variant: LoraVariant = "canonical"
    """canonical: one adapter per HF projection (q/k/v, gate/up), PEFT's layout; fused: one on linear_qkv and one on linear_fc1."""
    lora_init_adapter: str | None = None
    """Start the adapters from this HF PEFT adapter folder (adapter_config.json + adapter_model.safetensors) instead of PEFT's initialisation."""
    lora_base_bits: Literal[4] | None = None
    """QLoRA: hold the frozen base in 4 bits (needs bitsandbytes on a CUDA GPU; refused, not built yet)."""

    def __post_init__(self) -> None:
        if self.lora_rank is None:
            others = [f for f, v in (("--lora-init-adapter", self.lora_init_adapter),
                                     ("--lora-base-bits", self.lora_base_bits)) if v]
            if others:
                raise ValueError(f"{others[0]} needs --lora-rank (LoRA is off without it)")
            return
        if self.lora_rank <= 0:
            raise ValueError(f"--lora-rank {self.lora_rank}: give a positive rank (e.g. 16), or leave "
                             "it out for full-parameter training")
        if self.lora_alpha <= 0:
            raise ValueError(f"--lora-alpha {self.lora_alpha}: give a positive alpha (e.g. 2 x rank)")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"--lora-dropout {self.lora_dropout}: give a probability in [0, 1)")
        self.adapted()  # refuses unknown modules
        if self.lora_base_bits is not None:
            raise ValueError(qlora_refusal(self.lora_base_bits))

    @property
    def enabled(self) -> bool:
        """LoRA is on (--lora-rank given)."""
        return self.lora_rank is not None

    @property
    def scaling(self) -> float:
        """alpha / rank, PEFT's scaling (no rsLoRA)."""
        return self.lora_alpha / self.lora_rank

    def adapted(self) -> dict[str, tuple[str, ...]]:
        """megatron linear -> its adapted projections (("",) = one adapter on the whole linear)."""
        chosen: dict[str, list[str]] = {}
        known = ", ".join((*LORA_LINEARS, *LORA_HF_NAMES))
        if not self.lora_target_modules:
            raise ValueError(f"--lora-target-modules is empty: name some of {known}")
        for name in self.lora_target_modules:
            if name in LORA_LINEARS:
                parts = LORA_PARTS.get(name, ("",)) if self.lora_variant == "canonical" else ("",)
                chosen.setdefault(name, []).extend(parts)
            elif name in LORA_HF_NAMES:
                linear, part = LORA_HF_NAMES[name]
                if part and self.lora_variant == "fused":
                    raise ValueError(f"--lora-target-modules {name}: the fused variant adapts the whole "
                                     f"{linear}; name {linear}, or use --lora-variant canonical")
                chosen.setdefault(linear, []).append(part)
            else:
                raise ValueError(f"--lora-target-modules {name!r}: no such module; choose from {known}")
        return {linear: tuple(p for p in (LORA_PARTS.get(linear, ("",)) if parts != [""] else ("",))
                              if p in parts)
                for linear, parts in chosen.items() if linear in LORA_LINEARS}
