"""Stage 2 (SFT) on the pretraining loop: packed-sequence samples, their attention, their loss.

``SFTStage`` is the trainer's stage for ``--stage sft`` (``training/stages/__init__.py``); nothing
else of the loop changes (TP/PP/VPP/DP, checkpoints, exact resume, requeue, logging).

- **Samples.** ``SFTDataset`` reads what ``tools/preprocess_sft.py`` wrote (``PackedSFTDataset``)
  and gives, per packed sequence padded to ``--seq-length``: ``tokens``, ``labels`` (the next
  token), ``loss_mask`` (1 where the label is an assistant token), ``position_ids`` restarting
  at 0 in each conversation and ``document_ids`` (conversation number per token; the padding is
  one more document of its own, so no row of the attention mask is empty). Sample ``i`` of the
  run is sequence ``perm_e[i mod n]`` of epoch ``e = i // n``, ``perm_e`` a permutation seeded
  by ``(seed, e)``: a pure function of ``i``, so resuming at ``consumed_samples`` is exact.
- **Attention.** Local/SDPA layers get a block-diagonal causal mask ``[b, 1, s, s]`` (True =
  masked, megatron-core's convention) and a model built with rotary embeddings taken at
  ``position_ids`` (``models/document_positions.py``, asked for by ``ModelNeeds.packed_documents``);
  Transformer Engine layers get THD ``PackedSeqParams`` (``cu_seqlens``), with which megatron-core
  restarts RoPE itself. The choice follows the backends (``choose_backends``), once. Every
  pipeline stage reads the microbatch from the data iterator, so middle stages get the mask /
  cu_seqlens too (Megatron-LM #4092 cannot happen).
- **Loss normalisation.** ``loss_func`` returns (sum of the masked token losses, number of
  masked tokens); with ``calculate_per_token_loss`` megatron-core sums both over the
  microbatches, all-reduces the token count over data-parallel ranks and divides the gradients
  by it (``finalize_model_grads``). The loss is therefore the mean over every assistant token of
  the global batch: TRL ``SFTTrainer``'s per-token mean when the global batch is its batch.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from megatron_telecom.data.packed_sft import PackedSFTDataset
from megatron_telecom.runtime.distributed import get_device
from megatron_telecom.training.stages import ModelNeeds, Stage

if TYPE_CHECKING:
    from megatron_telecom.training.config import PretrainConfig

SFT_KEYS = ("tokens", "labels", "loss_mask", "position_ids", "document_ids")


class SFTDataset(torch.utils.data.Dataset):
    """``num_samples`` packed sequences, shuffled per epoch by ``seed``, padded to ``seq_length``."""

    def __init__(self, prefix: str, *, seq_length: int, num_samples: int, seed: int,
                 pad_token_id: int) -> None:
        self.packed = PackedSFTDataset(prefix)
        self.num_sequences = len(self.packed)
        if self.num_sequences == 0:
            raise ValueError(f"--sft-data-path {prefix}: the dataset holds no sequences")
        index = self.packed.tokens_index
        longest = int(np.add.reduceat(index.sequence_lengths, index.document_indices[:-1]).max())
        if longest > seq_length:
            raise ValueError(f"--sft-data-path {prefix} holds a packed sequence of {longest} tokens, "
                             f"more than --seq-length {seq_length}: preprocess with --seq-length "
                             f"{seq_length} or train with --seq-length {longest}")
        self.seq_length, self.num_samples = seq_length, num_samples
        self.seed, self.pad_token_id = seed, pad_token_id

    def __len__(self) -> int:
        return self.num_samples

    def sequence_index(self, i: int) -> int:
        """Which packed sequence sample ``i`` is (a pure function of ``i`` and the seed)."""
        epoch, within = divmod(i, self.num_sequences)
        order = np.random.RandomState([self.seed, epoch]).permutation(self.num_sequences)
        return int(order[within])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} of {self.num_samples}")
        sequence = self.packed[self.sequence_index(i)]
        return pad_sample(sequence.tokens, sequence.loss_mask, sequence.document_lengths,
                          seq_length=self.seq_length, pad_token_id=self.pad_token_id)


def pad_sample(tokens: np.ndarray, loss_mask: np.ndarray, document_lengths: np.ndarray, *,
               seq_length: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """One training sample: labels shifted inside each conversation, padding as its own document.

    ``loss_mask[t]`` of the stored data says token t is a trained label; token t predicts t + 1,
    so the sample's loss_mask at t is the stored mask at t + 1. The first token of a conversation
    is never trained, so no conversation's last token learns the next one's first.
    """
    n = int(tokens.size)
    out_tokens = np.full(seq_length, pad_token_id, dtype=np.int64)
    out_tokens[:n] = tokens
    labels = np.full(seq_length, pad_token_id, dtype=np.int64)
    labels[:n - 1] = tokens[1:]
    mask = np.zeros(seq_length, dtype=np.float32)
    mask[:n - 1] = loss_mask[1:]
    lengths = [int(x) for x in document_lengths] + ([seq_length - n] if seq_length > n else [])
    document_ids = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    position_ids = np.concatenate([np.arange(length, dtype=np.int64) for length in lengths])
    return {"tokens": torch.from_numpy(out_tokens), "labels": torch.from_numpy(labels),
            "loss_mask": torch.from_numpy(mask), "position_ids": torch.from_numpy(position_ids),
            "document_ids": torch.from_numpy(document_ids)}


def block_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """[b, s] document ids -> [b, 1, s, s] bool, True where attention is masked (megatron-core's
    convention): a token sees earlier tokens of its own document only."""
    s = document_ids.size(-1)
    other_document = document_ids[:, :, None] != document_ids[:, None, :]
    future = torch.ones(s, s, dtype=torch.bool, device=document_ids.device).triu(1)
    return (other_document | future).unsqueeze(1)


def packed_seq_params(document_ids: torch.Tensor) -> Any:
    """THD ``PackedSeqParams`` (cu_seqlens over the microbatch's documents) for Transformer Engine.

    The microbatch is one packed sequence (``--micro-batch-size 1``); the padding is its last
    document. megatron-core restarts RoPE at each ``cu_seqlens`` boundary for the thd format.
    """
    from megatron.core.packed_seq_params import PackedSeqParams

    if document_ids.size(0) != 1:
        raise ValueError("SFT with Transformer Engine packs one sequence per microbatch: "
                         "set --micro-batch-size 1")
    ids = document_ids[0]
    starts = torch.nonzero(ids[1:] != ids[:-1]).flatten() + 1
    cu_seqlens = torch.cat([ids.new_zeros(1), starts, ids.new_tensor([ids.numel()])]).to(torch.int32)
    max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu_seqlens, cu_seqlens_kv=cu_seqlens,
                           max_seqlen_q=max_seqlen, max_seqlen_kv=max_seqlen)


def model_inputs(batch: dict[str, torch.Tensor], *, use_transformer_engine: bool) -> dict[str, Any]:
    """GPTModel keyword arguments of an SFT microbatch: the mask or the THD packing params."""
    inputs: dict[str, Any] = {"input_ids": batch["tokens"], "position_ids": batch["position_ids"],
                              "labels": batch["labels"]}
    if use_transformer_engine:
        inputs["attention_mask"] = None
        inputs["packed_seq_params"] = packed_seq_params(batch["document_ids"])
    else:
        inputs["attention_mask"] = block_causal_mask(batch["document_ids"])
    return inputs


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(sum of the masked token losses, their count, {"lm loss": [sum, count]}).

    megatron-core (``calculate_per_token_loss``) divides the gradients by the global token count.
    """
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    reported = torch.stack([loss_sum.detach().clone(), mask.sum().detach()])
    return loss_sum, num_tokens, {"lm loss": reported}


def forward_step(data_iterator: Any, model: Any, *, use_transformer_engine: bool) -> tuple[torch.Tensor, Any]:
    """One SFT microbatch through one model chunk: packed documents kept apart."""
    device = get_device()
    batch = {k: v.to(device, non_blocking=True) for k, v in next(data_iterator).items()}
    output = model(**model_inputs(batch, use_transformer_engine=use_transformer_engine))
    return output, functools.partial(loss_func, batch["loss_mask"])


def validate_finetuning(cfg: PretrainConfig, *, flag: str, tool: str) -> None:
    """SFT and DPO read one packed dataset of their own (``flag``) and have no validation split yet."""
    d, t = cfg.data, cfg.training
    if not getattr(d, flag.removeprefix("--").replace("-", "_")) or d.data_path or d.data_recipe:
        raise ValueError(f"--stage {t.stage} reads {flag} PREFIX (from tools/{tool}.py); "
                         "drop --data-path/--data-recipe")
    if t.eval_interval > 0 and t.eval_iters > 0:
        raise ValueError(f"--stage {t.stage} has no validation split yet: add --eval-interval 0")


class SFTStage(Stage):
    """--stage sft: loss on the assistant tokens of --sft-data-path's packed conversations."""

    name = "sft"
    needs = ModelNeeds(per_token_loss=True, packed_documents=True)
    own_flags = ("data.sft_data_path",)

    @classmethod
    def validate(cls, cfg: PretrainConfig) -> None:
        validate_finetuning(cfg, flag="--sft-data-path", tool="preprocess_sft")

    def datasets(self, *, layout: Any, tokenizer: Any, seq_length: int,
                 stored: Any) -> tuple[Any, dict[str, Any]]:
        t = self.cfg.training
        return SFTDataset(self.cfg.data.sft_data_path, seq_length=seq_length, seed=t.seed,
                          num_samples=t.train_iters * layout.global_batch_size,
                          pad_token_id=tokenizer.eod), {}

    def forward_step(self, *, use_transformer_engine: bool) -> Any:
        return functools.partial(forward_step, use_transformer_engine=use_transformer_engine)


STAGE = SFTStage
