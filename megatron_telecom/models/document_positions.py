"""GPTModel whose RoPE follows the ``position_ids`` it is called with: packed documents restart at 0.

megatron-core's GPTModel takes rotary embeddings for positions 0..s-1 on the local spec and
ignores ``position_ids`` there; with THD ``PackedSeqParams`` (Transformer Engine) it restarts
RoPE at each ``cu_seqlens`` boundary itself. A stage that packs documents (SFT's conversations,
DPO's pair halves) on the local spec is built as ``DocumentPositionGPTModel`` instead
(``build_gpt_model(document_positions=True)``, chosen once with the backends): its
``_preprocess`` looks the rotary table up at the given ids. Everything else is GPTModel's own.

Imports megatron: import it after the CPU shim (``models/gpt.py`` imports it lazily).
"""

from __future__ import annotations

from typing import Any

import torch
from megatron.core.models.gpt import GPTModel

__all__ = ["DocumentPositionGPTModel", "rotary_at_positions"]


def rotary_at_positions(rotary_pos_emb: Any, position_ids: torch.Tensor) -> torch.Tensor:
    """[b, s] position ids -> [s, b, 1, dim] rotary embeddings (megatron's layout) at those ids."""
    table = rotary_pos_emb.get_emb(int(position_ids.max()) + 1)[:, 0, 0, :]  # [p, dim]
    return table[position_ids.t()].unsqueeze(2)


class DocumentPositionGPTModel(GPTModel):
    """GPTModel with RoPE taken at ``position_ids`` (per-document positions of packed sequences)."""

    def _preprocess(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                    decoder_input: torch.Tensor | None = None, inference_context: Any = None,
                    packed_seq_params: Any = None, padding_mask: torch.Tensor | None = None) -> tuple:
        out = super()._preprocess(input_ids, position_ids, decoder_input, inference_context,
                                  packed_seq_params, padding_mask)
        if out[1] is None or position_ids is None or packed_seq_params is not None:
            return out  # no RoPE on this path, or THD packing (RoPE restarts from cu_seqlens)
        return (out[0], rotary_at_positions(self.rotary_pos_emb, position_ids), *out[2:])
