"""Log-likelihood of continuations, split and summed exactly as lm-evaluation-harness does.

A (context, continuation) pair is tokenized like lm-evaluation-harness 0.4's ``_encode_pair``:
trailing whitespace of the context moves to the continuation, the context is tokenized alone,
and the continuation is what ``tokenize(context + continuation)`` has beyond the context's
length; special tokens are the tokenizer's default (a BOS where the tokenizer adds one), as
lm-evaluation-harness 0.4.13's ``hf`` backend encodes by default. The model input is ``context + continuation`` left-truncated
to the model's length, and the score is the summed log-probability of the continuation tokens.

Speed: the choices of one question share the context, so the context runs once (only its last
position goes through the LM head) and its KV cache is repeated over all continuations, which run
as one right-padded batch (causal attention: padding after a sequence never changes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ContinuationScore:
    """Summed log-likelihood of one continuation and how many tokens it has."""

    loglik: float
    num_tokens: int


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


def _gather(logprobs: torch.Tensor, ids: list[int]) -> float:
    """Sum of ``logprobs[i, ids[i]]`` over rows; logprobs is [n, vocab]."""
    index = torch.tensor(ids, dtype=torch.long, device=logprobs.device)
    return float(logprobs[torch.arange(len(ids), device=logprobs.device), index].sum())


@torch.inference_mode()
def score_continuations(model, context_ids: list[int], continuations: list[list[int]]) -> list[ContinuationScore]:
    """Summed log-likelihood of each continuation after one shared context (KV cache reused)."""
    if not context_ids:
        raise ValueError("an empty context has no position to predict the first token from; "
                         "start the prompt with text")
    if any(not ids for ids in continuations):
        raise ValueError("a continuation tokenized to nothing: every choice needs text")
    longest = max(len(ids) for ids in continuations)
    context_ids = context_ids[-(max_length(model) - longest + 1):]  # lm-eval truncates on the left too
    device = next(model.parameters()).device
    prefix = model(input_ids=torch.tensor([context_ids], device=device), use_cache=longest > 1,
                   logits_to_keep=1)
    first = torch.log_softmax(prefix.logits[0, -1].float(), dim=-1)  # [vocab]
    scores = [float(first[ids[0]]) for ids in continuations]
    if longest > 1:
        rest = _score_tails(model, prefix.cache, len(context_ids), continuations, longest)
        scores = [s + r for s, r in zip(scores, rest)]
    return [ContinuationScore(s, len(ids)) for s, ids in zip(scores, continuations)]


def _score_tails(model, cache, context_len: int, continuations: list[list[int]], longest: int) -> list[float]:
    """Log-likelihood of every continuation token after the first, all continuations in one batch."""
    device = next(model.parameters()).device
    cache.batch_repeat_interleave(len(continuations))
    inputs = torch.zeros(len(continuations), longest - 1, dtype=torch.long, device=device)  # [n, s]
    for row, ids in enumerate(continuations):
        inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1], device=device)
    positions = torch.arange(context_len, context_len + longest - 1, device=device).expand_as(inputs)
    logits = model(input_ids=inputs, cache=cache, position_ids=positions, use_cache=False).logits
    tails = []
    for row, ids in enumerate(continuations):
        logprobs = torch.log_softmax(logits[row, : len(ids) - 1].float(), dim=-1)  # [len-1, vocab]
        tails.append(_gather(logprobs, ids[1:]) if len(ids) > 1 else 0.0)
    return tails
