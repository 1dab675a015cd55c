"""Log-likelihood of continuations, split and summed exactly as lm-evaluation-harness does.

A (context, continuation) pair is tokenized like lm-evaluation-harness 0.4's ``_encode_pair``:
trailing whitespace of the context moves to the continuation, the context is tokenized alone,
and the continuation is what ``tokenize(context + continuation)`` has beyond the context's
length; special tokens are the tokenizer's default (a BOS where the tokenizer adds one), as
lm-evaluation-harness 0.4.13's ``hf`` backend encodes by default. The score is the summed
log-probability of the continuation tokens after the context (left-truncated to the model length).

Speed: the choices of a question share the context and often their first tokens. One packed
sequence holds the context once and then a prefix tree (trie) of the continuations: every
distinct continuation prefix is one token, placed at its position after the context, and a 4-D
attention mask lets it see the context and its own ancestors only, so each token is computed
once and sees exactly the tokens it would see in ``context + continuation``. Several requests
share a row of ``ROW_TOKENS`` tokens (the mask keeps them apart), rows form a right-padded batch,
and only the positions that predict a continuation token go through the LM head.

One scoring path: the model is reached through a ``TokenScorer`` (log-probs of given tokens at
given positions). ``HFScorer`` runs a Hugging Face model with the tree layout above; the trainer's
megatron scorer (``training/benchmark_eval.py``) takes plain causal rows instead (megatron's RoPE
ignores position ids), one ``context + continuation[:-1]`` per choice, which predicts every token
from the same tokens. Pairs, packing, targets and sums are this module's for both, and held-out
perplexity windows are requests of the same kind (``perplexity.window_requests``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

ROW_TOKENS = 256  # requests are packed into rows of this many tokens (no padding between them)
LOGIT_CHUNK = 512  # positions per LM-head call: bounds the [positions, vocab] float32 buffer

@dataclass(frozen=True)
class ContinuationScore:
    """Summed log-likelihood of one continuation and how many tokens it has."""

    loglik: float
    num_tokens: int


@dataclass(frozen=True)
class PackedRequest:
    """Context + continuation trie as one sequence, and the (position, token) pairs to score."""

    input_ids: list[int]
    positions: list[int]
    parents: list[int]  # index of the token each token follows (-1: the first)
    targets: list[list[tuple[int, int]]]  # per continuation: (predicting index, token)


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with the tokenizer's default special tokens (lm-evaluation-harness's default)."""
    return tokenizer(text)["input_ids"]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids split as lm-evaluation-harness's ``_encode_pair``."""
    stripped = context.rstrip()
    if len(stripped) < len(context):
        continuation = context[len(stripped):] + continuation
        context = stripped
    whole = tokenize(tokenizer, context + continuation)
    context_ids = tokenize(tokenizer, context)
    return context_ids, whole[len(context_ids):]


def max_length(model) -> int:
    """Longest input the model takes (its ``max_position_embeddings``)."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def pack(context_ids: list[int], continuations: list[list[int]], limit: int) -> PackedRequest:
    """The packed sequence of one request; the context is left-truncated to fit ``limit`` positions."""
    if not context_ids:
        raise ValueError("an empty context has no position to predict the first token from; "
                         "start the prompt with text")
    if any(not ids for ids in continuations):
        raise ValueError("a continuation tokenized to nothing: every choice needs text")
    context_ids = context_ids[-(limit - max(len(ids) for ids in continuations) + 1):]
    length = len(context_ids)
    input_ids, positions, parents = list(context_ids), list(range(length)), list(range(-1, length - 1))
    node: dict[tuple[int, ...], int] = {(): length - 1}
    targets = []
    for ids in continuations:
        for depth in range(1, len(ids)):  # every prefix but the whole continuation is an input
            if tuple(ids[:depth]) not in node:
                node[tuple(ids[:depth])] = len(input_ids)
                input_ids.append(ids[depth - 1])
                positions.append(length + depth - 1)
                parents.append(node[tuple(ids[:depth - 1])])
        targets.append([(node[tuple(ids[:depth])], ids[depth]) for depth in range(len(ids))])
    return PackedRequest(input_ids, positions, parents, targets)


def _attention_mask(parents: list[int], width: int) -> torch.Tensor:
    """[width, width] bool: each token sees itself and its ancestors; padding sees itself."""
    mask = torch.eye(width, dtype=torch.bool)
    for index, parent in enumerate(parents):
        if parent >= 0:
            mask[index] |= mask[parent]
    return mask


class TokenScorer(Protocol):
    """A model forward for scoring: the log-probability of chosen tokens at chosen positions.

    This is the only part that differs between a Hugging Face model (``HFScorer``) and the
    in-memory megatron model during training (``training/benchmark_eval.py``); packing, batching
    and the summing of continuation log-likelihoods are ``score_requests``'s, shared by both.
    """

    max_length: int
    """Longest input the model takes."""
    tree_attention: bool
    """Takes rows of several requests with tree masks and positions (else: one causal row each)."""

    def __call__(self, rows: list[PackedRequest], targets: list[tuple[int, int, int]]) -> torch.Tensor:
        """float64 log p(token | row, index) for each (row, index, token) of ``targets``."""


def is_causal_chain(packed: PackedRequest) -> bool:
    """Whether a row is one plain causal sequence (positions 0.. and each token after the previous)."""
    return packed.positions == list(range(len(packed.positions))) and \
        packed.parents == list(range(-1, len(packed.parents) - 1))


class HFScorer:
    """``TokenScorer`` of a Hugging Face causal LM: decoder once per batch, LM head at targets only."""

    tree_attention = True

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.max_length = max_length(model)

    @torch.inference_mode()
    def __call__(self, rows: list[PackedRequest], targets: list[tuple[int, int, int]]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        width = max(len(p.input_ids) for p in rows)
        inputs = torch.zeros(len(rows), width, dtype=torch.long)  # [b, s]
        for row, packed in enumerate(rows):
            inputs[row, : len(packed.input_ids)] = torch.tensor(packed.input_ids)
        extra = {}
        if not all(is_causal_chain(p) for p in rows):  # right padding needs no mask in causal rows
            positions = torch.zeros(len(rows), width, dtype=torch.long)  # [b, s]
            for row, packed in enumerate(rows):
                positions[row, : len(packed.positions)] = torch.tensor(packed.positions)
            mask = torch.stack([_attention_mask(p.parents, width) for p in rows])[:, None]  # [b, 1, s, s]
            extra = {"position_ids": positions.to(device), "attention_mask": mask.to(device)}
        hidden = self.model.get_decoder()(input_ids=inputs.to(device), **extra).last_hidden_state  # [b, s, h]
        return target_logprobs(lambda h: self.model.get_output_embeddings()(h), hidden, targets)


def target_logprobs(head, hidden: torch.Tensor, targets: list[tuple[int, int, int]],
                    vocab_size: int | None = None) -> torch.Tensor:
    """float64 log-softmax of ``head(hidden[row, index])`` at each target token, LOGIT_CHUNK at a time.

    ``vocab_size`` cuts the logits to the real vocabulary (a megatron model's is padded).
    """
    rows = torch.tensor([t[0] for t in targets], device=hidden.device)
    cols = torch.tensor([t[1] for t in targets], device=hidden.device)
    tokens = torch.tensor([t[2] for t in targets], device=hidden.device)
    out = torch.empty(len(targets), dtype=torch.float64)
    for lo in range(0, len(targets), LOGIT_CHUNK):
        logits = head(hidden[rows[lo:lo + LOGIT_CHUNK], cols[lo:lo + LOGIT_CHUNK]]).float()  # [p, vocab]
        if vocab_size is not None:
            logits = logits[:, :vocab_size]
        picked = torch.log_softmax(logits, dim=-1).gather(1, tokens[lo:lo + LOGIT_CHUNK, None])
        out[lo:lo + LOGIT_CHUNK] = picked[:, 0].double().cpu()
    return out


def _concat(requests: list[PackedRequest]) -> PackedRequest:
    """Several packed requests as one row: parents keep each request blind to the others."""
    row = PackedRequest([], [], [], [])
    for packed in requests:
        offset = len(row.input_ids)
        row.input_ids.extend(packed.input_ids)
        row.positions.extend(packed.positions)
        row.parents.extend(p + offset if p >= 0 else -1 for p in packed.parents)
        row.targets.extend([(i + offset, token) for i, token in t] for t in packed.targets)
    return row


def _rows(order: list[int], packed: list[PackedRequest], row_tokens: int) -> Iterator[list[int]]:
    """Request indexes filling rows of at most ``row_tokens`` tokens (longer requests alone)."""
    row: list[int] = []
    used = 0
    for index in order:
        length = len(packed[index].input_ids)
        if row and used + length > row_tokens:
            yield row
            row, used = [], 0
        row.append(index)
        used += length
    if row:
        yield row


def _batches(rows: list[PackedRequest], tokens_per_batch: int) -> Iterator[list[int]]:
    """Row indexes, longest first, in batches of at most ``tokens_per_batch`` padded tokens."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].input_ids))
    batch: list[int] = []
    for index in order:
        if batch and (len(batch) + 1) * len(rows[batch[0]].input_ids) > tokens_per_batch:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def score_requests(scorer: TokenScorer, requests: list[tuple[list[int], list[list[int]]]],
                   tokens_per_batch: int = 2048,
                   progress: Callable[[int], None] | None = None) -> list[list[ContinuationScore]]:
    """Scores of the continuations of each (context ids, continuation ids) request.

    With a tree-attention scorer a request is one trie and several share a row; otherwise each
    continuation is its own causal row ``context + continuation[:-1]``. Both predict every
    continuation token from exactly the same tokens, so they give the same log-likelihoods.
    """
    if isinstance(scorer, torch.nn.Module):  # a bare Hugging Face model
        scorer = HFScorer(scorer)
    if scorer.tree_attention:
        units = [pack(context, continuations, scorer.max_length) for context, continuations in requests]
        owners = [(i, None) for i in range(len(requests))]
        order = sorted(range(len(units)), key=lambda i: -len(units[i].input_ids))
        groups = list(_rows(order, units, ROW_TOKENS))
    else:
        units, owners = [], []
        for i, (context, continuations) in enumerate(requests):
            for j, continuation in enumerate(continuations):
                units.append(pack(context, [continuation], scorer.max_length))
                owners.append((i, j))
        groups = [[i] for i in range(len(units))]
    rows = [_concat([units[i] for i in group]) for group in groups]
    scores: list[list[ContinuationScore | None]] = [[None] * len(c) for _, c in requests]
    for batch in _batches(rows, tokens_per_batch):
        targets = [(b, index, token) for b, row in enumerate(batch)
                   for t in rows[row].targets for index, token in t]
        logprobs = scorer([rows[row] for row in batch], targets).tolist()
        at = 0
        for row in batch:
            for unit in groups[row]:
                request, choice = owners[unit]
                for k, t in enumerate(units[unit].targets):
                    score = ContinuationScore(sum(logprobs[at:at + len(t)]), len(t))
                    scores[request][choice if choice is not None else k] = score
                    at += len(t)
        if progress is not None:
            progress(len(targets))
    return scores  # type: ignore[return-value]
