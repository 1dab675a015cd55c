"""Reads packed SFT / DPO sequences at training time: tokens, loss mask and document boundaries.

The format is what ``tools/preprocess_sft.py`` and ``tools/preprocess_dpo.py`` write (`data/sft.py`,
`data/preference.py`): ``P_tokens`` and ``P_loss_mask`` indexed datasets with one document per
packed sequence and one sequence inside it per conversation (or pair half). The preprocessors
live apart from this reader so a trainer imports no tokenizer or chat-template code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_telecom.data.indexed import read_document, read_index


@dataclass(frozen=True)
class PackedSequence:
    """One packed sequence as a trainer reads it."""

    tokens: np.ndarray  # [n] token ids
    loss_mask: np.ndarray  # [n] uint8, 1 = this token is a trained label
    document_lengths: np.ndarray  # [d] int32, sums to n; cu_seqlens = [0, *cumsum]


class PackedSFTDataset:
    """Reads what `preprocess_sft` wrote: sequence i with its tokens, mask and conversation lengths."""

    def __init__(self, output_prefix: str | Path) -> None:
        self.tokens_prefix, self.mask_prefix = f"{output_prefix}_tokens", f"{output_prefix}_loss_mask"
        self.tokens_index, self.mask_index = read_index(self.tokens_prefix), read_index(self.mask_prefix)
        if not (np.array_equal(self.tokens_index.sequence_lengths, self.mask_index.sequence_lengths)
                and np.array_equal(self.tokens_index.document_indices, self.mask_index.document_indices)):
            raise ValueError(f"{self.tokens_prefix} and {self.mask_prefix} do not have the same layout")

    def __len__(self) -> int:
        return self.tokens_index.num_documents

    def __getitem__(self, i: int) -> PackedSequence:
        first, last = self.tokens_index.document_indices[i], self.tokens_index.document_indices[i + 1]
        return PackedSequence(tokens=read_document(self.tokens_prefix, self.tokens_index, i),
                              loss_mask=read_document(self.mask_prefix, self.mask_index, i),
                              document_lengths=self.tokens_index.sequence_lengths[first:last])
