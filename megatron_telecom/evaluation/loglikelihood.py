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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

ROW_TOKENS = 512  # requests are packed into rows of this many tokens (no padding between them)

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


@torch.inference_mode()
def _score_batch(model, batch: list[PackedRequest]) -> list[list[ContinuationScore]]:
    """Scores of every continuation of a batch of packed requests, in one forward."""
    device = next(model.parameters()).device
    width = max(len(p.input_ids) for p in batch)
    inputs = torch.zeros(len(batch), width, dtype=torch.long)  # [b, s]
    positions = torch.zeros(len(batch), width, dtype=torch.long)  # [b, s]
    for row, packed in enumerate(batch):
        inputs[row, : len(packed.input_ids)] = torch.tensor(packed.input_ids)
        positions[row, : len(packed.positions)] = torch.tensor(packed.positions)
    mask = torch.stack([_attention_mask(p.parents, width) for p in batch])[:, None]  # [b, 1, s, s]
    hidden = model.get_decoder()(input_ids=inputs.to(device), position_ids=positions.to(device),
                                 attention_mask=mask.to(device)).last_hidden_state  # [b, s, h]
    wanted = sorted({(row, i) for row, p in enumerate(batch) for t in p.targets for i, _ in t})
    where = {key: n for n, key in enumerate(wanted)}
    rows, cols = zip(*wanted)
    logits = model.get_output_embeddings()(hidden[list(rows), list(cols)]).float()  # [p, vocab]
    logprobs = torch.log_softmax(logits, dim=-1).cpu()
    return [[ContinuationScore(float(sum(logprobs[where[row, i], token] for i, token in t)), len(t))
             for t in packed.targets] for row, packed in enumerate(batch)]


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


def score_requests(model, requests: list[tuple[list[int], list[list[int]]]],
                   tokens_per_batch: int = 2048) -> list[list[ContinuationScore]]:
    """Scores of the continuations of each (context ids, continuation ids) request."""
    packed = [pack(context, continuations, max_length(model)) for context, continuations in requests]
    order = sorted(range(len(packed)), key=lambda i: -len(packed[i].input_ids))
    rows = list(_rows(order, packed, ROW_TOKENS))
    scores: list[list[ContinuationScore]] = [[] for _ in requests]
    per_batch = max(1, tokens_per_batch // ROW_TOKENS)
    for lo in range(0, len(rows), per_batch):
        batch = rows[lo:lo + per_batch]
        results = _score_batch(model, [_concat([packed[i] for i in row]) for row in batch])
        for row, result in zip(batch, results):
            for index in row:
                count = len(packed[index].targets)
                scores[index], result = result[:count], result[count:]
    return scores
