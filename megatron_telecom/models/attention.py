"""Core attention on ``torch.nn.functional.scaled_dot_product_attention`` (SDPA) for the local spec.

megatron-core's local ``DotProductAttention`` materialises the ``[b, heads, s, s]`` score
matrix; SDPA lets torch pick a flash or memory-efficient kernel on GPUs (causal, GQA) and an
exact math kernel on CPUs. ``SDPADotProductAttention`` keeps megatron-core's core-attention
interface (constructor and ``forward`` as ``DotProductAttention``), so it drops into the layer
spec's ``core_attention`` slot; ``get_layer_spec`` in ``models/backends.py`` picks it.

Decisions: with no ``attention_mask`` a causal layer calls SDPA with ``is_causal`` (and native
GQA), which the flash kernel serves; an explicit mask (``--reset-attention-mask`` data) uses the
mask as given, like ``DotProductAttention`` does, with the key/value groups expanded so the
memory-efficient kernel can serve it. Features only Transformer Engine's attention has in
megatron-core (packed sequences, attention bias, sliding windows, context parallelism,
softmax offsets) are refused when the layer is built or called.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

__all__ = ["SDPADotProductAttention"]

# SDPA's enable_gqa (torch >= 2.5) lets the flash kernel read grouped keys/values as they are;
# older torch gets them expanded to one per query head.
_NATIVE_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)


class SDPADotProductAttention(MegatronModule):
    """Drop-in for megatron-core's ``DotProductAttention`` computed by torch's SDPA kernels."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection: object | None = None,
    ) -> None:
        super().__init__(config=config)
        unsupported = {
            "context_parallel_size > 1": config.context_parallel_size > 1,
            "window_size (sliding window)": config.window_size is not None,
            f"softmax_type {config.softmax_type!r}": config.softmax_type != "vanilla",
        }
        refused = [name for name, present in unsupported.items() if present]
        if refused:
            raise ValueError(
                f"SDPA core attention does not support {', '.join(refused)}: use the Transformer "
                "Engine layer spec (--transformer-impl transformer_engine)"
            )
        self.layer_number = max(1, layer_number)
        self.attn_mask_type = attn_mask_type
        self.attention_type = attention_type
        # apply_query_key_layer_scaling divides the scale by the layer number and multiplies the
        # scores back inside the softmax (DotProductAttention): the product is this scale.
        self.softmax_scale = (
            1.0 / math.sqrt(config.kv_channels) if softmax_scale is None else softmax_scale
        )
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: object | None = None,
    ) -> torch.Tensor:
        """query [sq, b, np, hn], key/value [sk, b, ng, hn] -> context [sq, b, np * hn].

        ``attention_mask`` (broadcastable to [b, np, sq, sk]) is True where attention is masked.
        """
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError(
                "SDPA core attention supports neither packed sequences nor an attention bias: "
                "use the Transformer Engine layer spec"
            )
        sq, batch, heads, head_dim = query.shape
        sk, groups = key.size(0), key.size(2)
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, n, s, hn]
        mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type
        causal = attention_mask is None and mask_type == AttnMaskType.causal and sq > 1
        if causal and sq != sk:
            raise ValueError(
                f"SDPA core attention: a causal mask needs equal query and key lengths "
                f"(got {sq} and {sk}); pass an explicit attention_mask"
            )
        gqa = {}
        if heads != groups and (attention_mask is not None or not _NATIVE_GQA):
            k = k.repeat_interleave(heads // groups, dim=1)
            v = v.repeat_interleave(heads // groups, dim=1)
        elif heads != groups:
            gqa = {"enable_gqa": True}
        dropout_p = self.dropout_p if self.training else 0.0
        rng = tensor_parallel.get_cuda_rng_tracker().fork() if dropout_p else contextlib.nullcontext()
        with rng:  # dropout draws from the model-parallel RNG, as DotProductAttention's
            context = F.scaled_dot_product_attention(
                q, k, v,
                attn_mask=None if attention_mask is None else ~attention_mask,
                dropout_p=dropout_p,
                is_causal=causal,
                scale=self.softmax_scale,
                **gqa,
            )  # [b, np, sq, hn]
        return context.permute(2, 0, 1, 3).reshape(sq, batch, heads * head_dim)

