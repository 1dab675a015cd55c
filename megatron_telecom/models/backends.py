"""Which kernels build the model, decided once before anything is built.

``choose_backends`` turns --transformer-impl / --attention-backend, what the stage's model needs
(per-document positions of packed sequences) and what this machine has into ``ModelBackends``; ``get_layer_spec`` builds the decoder layer spec from it: the
Transformer Engine spec (with FP8) when TE is used, megatron-core's local spec otherwise (CPU,
CI). The local spec's core attention is ``sdpa`` (torch's fused kernels, the default without
TE) or ``local`` (megatron-core's ``DotProductAttention``, s x s scores).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from megatron_telecom.models.options import ATTENTION_BACKENDS, AttentionBackend, TransformerImpl

if TYPE_CHECKING:  # megatron is imported lazily so the CPU shim can be installed first
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_config import TransformerConfig


@functools.cache
def transformer_engine_available() -> bool:
    """True when ``import transformer_engine`` works (TE may also raise non-ImportErrors)."""
    try:
        import transformer_engine  # noqa: F401
    except Exception:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class ModelBackends:
    """Which kernels build the model, decided once by ``choose_backends`` before building."""

    use_transformer_engine: bool
    """Transformer Engine's layer spec and fused kernels (FP8-capable); else the local spec."""
    attention_backend: AttentionBackend
    """Core attention of the local spec: sdpa (also for auto) or megatron's DotProductAttention."""
    document_positions: bool = False
    """Build the model with RoPE at its ``position_ids`` (packed documents on the local spec;
    Transformer Engine restarts RoPE from THD ``cu_seqlens`` itself)."""


def choose_backends(
    *, transformer_impl: TransformerImpl | None = None,
    attention_backend: str = "auto",
    packed_documents: bool = False,
) -> ModelBackends:
    """--transformer-impl / --attention-backend -> the backends (None impl: by capability).

    ``packed_documents``: the stage packs documents whose positions restart at 0 (SFT, DPO).

    TE is chosen by capability only with ``attention_backend`` auto: an explicit sdpa/local
    attention is a local-spec attention, and asking for it together with TE is an error.
    """
    if attention_backend not in ATTENTION_BACKENDS:
        raise ValueError(
            f"--attention-backend {attention_backend!r}: choose one of {ATTENTION_BACKENDS}"
        )
    if transformer_impl == "transformer_engine" and attention_backend != "auto":
        raise ValueError(
            f"--attention-backend {attention_backend} builds the local layer spec: drop "
            "--transformer-impl transformer_engine, or use --attention-backend auto"
        )
    if transformer_impl == "transformer_engine" and not transformer_engine_available():
        raise ValueError(
            "Transformer Engine was requested but `import transformer_engine` fails: install "
            "transformer-engine[pytorch] in a CUDA environment, or drop the TE/FP8 options"
        )
    if transformer_impl is None:
        use_te = attention_backend == "auto" and transformer_engine_available()
        use_te = use_te and torch.cuda.is_available()
    else:
        use_te = transformer_impl == "transformer_engine"
    return ModelBackends(use_transformer_engine=use_te, attention_backend=attention_backend,
                         document_positions=packed_documents and not use_te)


# Conversion and evaluation build the same model everywhere: local spec, SDPA attention.
LOCAL_BACKENDS = ModelBackends(use_transformer_engine=False, attention_backend="sdpa")


def get_layer_spec(config: TransformerConfig, backends: ModelBackends) -> ModuleSpec:
    """The decoder layer spec: Transformer Engine's (fused, FP8-capable) or the local one.

    The local spec's core attention is SDPA, or megatron's DotProductAttention for attention
    backend local.
    """
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if backends.use_transformer_engine:
        return get_gpt_layer_with_transformer_engine_spec()
    if config.fp8 or config.sequence_parallel:
        raise ValueError(
            "FP8 and sequence parallel need the Transformer Engine layer spec; "
            "transformer_engine is not usable here"
        )
    spec = get_gpt_layer_local_spec(normalization=config.normalization)
    if backends.attention_backend != "local":
        from megatron_telecom.models.attention import SDPADotProductAttention  # imports megatron

        spec.submodules.self_attention.submodules.core_attention = SDPADotProductAttention
    return spec
