"""Log-likelihood of continuations, split and summed exactly as lm-evaluation-harness does.

A (context, continuation) pair is tokenized like lm-evaluation-harness 0.4's ``_encode_pair``:
trailing whitespace of the context moves to the continuation, the context is tokenized alone,
and the continuation is what ``tokenize(context + continuation)`` has beyond the context's
length; special tokens are the tokenizer's default (a BOS where the tokenizer adds one), as
lm-evaluation-harness 0.4.13's ``hf`` backend encodes by default. The score is the summed
log-probability of the continuation tokens after the context (left-truncated to the model length).

Speed: the choices of a question share the context and often their first tokens, and the
questions of a benchmark often share their first words ("Question: What is the"). Requests are
taken in token order and packed into rows of at most ``row_tokens`` tokens, each row one prefix
tree (trie): every distinct prefix of a context + continuation is one token, placed at its position
(its depth), and attends to its own ancestors only, so each token is computed once and sees exactly
the tokens it would see in ``context + continuation``. A Llama-family model runs on the real
tokens of a batch only (``PackedDecoder``: no padding through the projections and MLPs), and a
tree row is attended by blocks of ``QUERY_BLOCK`` queries against their ancestors, not the whole
row. Only the positions that predict a continuation token go through the LM head, once per
position (a question's choices all start from its last context token).

One scoring path: the model is reached through a ``TokenScorer`` (log-probs of given tokens at
given positions). ``HFScorer`` runs a Hugging Face model with the tree layout above; the trainer's
megatron scorer (``training/benchmark_eval.py``) takes plain causal rows instead (megatron's RoPE
ignores position ids), one ``context + continuation[:-1]`` per choice, which predicts every token
from the same tokens. Pairs, packing, targets and sums are this module's for both, and held-out
perplexity windows are requests of the same kind (``perplexity.window_requests``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

ROW_TOKENS = 1024  # tokens of one prefix-tree row (PackedDecoder): wider rows share more prefixes
PADDED_ROW_TOKENS = 256  # the same for a model's own forward, whose attention spans whole padded rows
QUERY_BLOCK = 32  # queries per attention block of a tree row (its keys: their ancestors)
LOGIT_CHUNK = 512  # positions per LM-head call: bounds the [positions, vocab] float32 buffer

@dataclass(frozen=True)
class ContinuationScore:
    """Summed log-likelihood of one continuation and how many tokens it has."""

    loglik: float
    num_tokens: int


@dataclass(frozen=True)
class PackedRequest:
    """One or more requests as one prefix tree (a row), and the (index, token) pairs to score."""

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


class _TreeBuilder:
    """A prefix tree (trie) of token sequences, one node per distinct prefix, in insertion order."""

    def __init__(self) -> None:
        self.row = PackedRequest([], [], [], [])
        self.nodes: dict[tuple[int, int], int] = {}  # (parent index, token) -> index
        self.keys: list[tuple[int, int]] = []  # the key of each index, to undo an add

    def child(self, parent: int, token: int, position: int) -> int:
        """The index of ``token`` after ``parent`` (at ``position``), appended when new."""
        index = self.nodes.get((parent, token))
        if index is None:
            index = self.nodes[(parent, token)] = len(self.keys)
            self.keys.append((parent, token))
            self.row.input_ids.append(token)
            self.row.positions.append(position)
            self.row.parents.append(parent)
        return index

    def add(self, context_ids: list[int], continuations: list[list[int]], limit: int) -> None:
        """One request: the context (left-truncated to fit ``limit`` positions), then its continuations."""
        if not context_ids:
            raise ValueError("an empty context has no position to predict the first token from; "
                             "start the prompt with text")
        if any(not ids for ids in continuations):
            raise ValueError("a continuation tokenized to nothing: every choice needs text")
        context_ids = context_ids[-(limit - max(len(ids) for ids in continuations) + 1):]
        end = -1
        for position, token in enumerate(context_ids):
            end = self.child(end, token, position)
        for ids in continuations:  # every prefix but the whole continuation is an input
            at, targets = end, []
            for depth, token in enumerate(ids):
                targets.append((at, token))
                if depth < len(ids) - 1:
                    at = self.child(at, token, len(context_ids) + depth)
            self.row.targets.append(targets)

    def undo(self, length: int, num_targets: int) -> None:
        """Drop the nodes from index ``length`` on and the targets from ``num_targets`` on."""
        for key in self.keys[length:]:
            del self.nodes[key]
        del self.keys[length:], self.row.targets[num_targets:]
        for column in (self.row.input_ids, self.row.positions, self.row.parents):
            del column[length:]


def pack(requests: list[tuple[list[int], list[list[int]]]], limit: int) -> PackedRequest:
    """(context ids, continuation ids) requests as one prefix tree; contexts left-truncated to ``limit``."""
    tree = _TreeBuilder()
    for context_ids, continuations in requests:
        tree.add(context_ids, continuations, limit)
    return tree.row


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
    row_tokens: int | None
    """Tokens of a prefix-tree row of several requests (tree masks and positions); None: the
    scorer takes one causal row per continuation."""

    def __call__(self, rows: list[PackedRequest], targets: list[tuple[int, int, int]]) -> torch.Tensor:
        """float64 log p(token | row, index) for each (row, index, token) of ``targets``."""


def is_causal_chain(packed: PackedRequest) -> bool:
    """Whether a row is one plain causal sequence (positions 0.. and each token after the previous)."""
    return packed.positions == list(range(len(packed.positions))) and \
        packed.parents == list(range(-1, len(packed.parents) - 1))


class HFScorer:
    """``TokenScorer`` of a Hugging Face causal LM: decoder once per batch, LM head at targets only.

    A Llama-family model (``packs_tokens``) runs through ``PackedDecoder`` (real tokens only, no
    padding); any other model through its own forward on the right-padded batch.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.max_length = max_length(model)
        self.decoder = PackedDecoder(model) if packs_tokens(model) else None
        self.row_tokens = PADDED_ROW_TOKENS if self.decoder is None else ROW_TOKENS

    @torch.inference_mode()
    def __call__(self, rows: list[PackedRequest], targets: list[tuple[int, int, int]]) -> torch.Tensor:
        head = self.model.get_output_embeddings()
        if self.decoder is not None:
            hidden, starts = self.decoder(rows)  # [1, tokens, h]
            return target_logprobs(head, hidden, [(0, starts[row] + index, token) for row, index, token in targets])
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
        return target_logprobs(head, hidden, targets)


def packs_tokens(model: torch.nn.Module) -> bool:
    """Whether ``PackedDecoder`` runs ``model``: a Llama or Mistral decoder with SiLU MLPs and full attention."""
    config = model.config
    window = getattr(config, "sliding_window", None)
    return config.model_type in ("llama", "mistral") and getattr(config, "hidden_act", None) == "silu" and (
        window is None or window >= max_length(model))


@dataclass(frozen=True)
class AttentionLayout:
    """Where a batch's tokens sit for one SDPA call: ``[blocks, heads, block, d]`` queries, each block
    with its own ``key_width`` keys; ``queries`` and ``keys`` index the tokens (padding repeats token
    0 and is masked or dropped), ``back`` is each token's query slot, ``mask`` None means causal."""

    queries: torch.Tensor  # [blocks * block]
    keys: torch.Tensor  # [blocks * key_width]
    back: torch.Tensor  # [tokens]
    mask: torch.Tensor | None  # [blocks, 1, block, key_width] additive float
    shape: tuple[int, int, int]  # blocks, block, key_width

    @staticmethod
    def causal(lengths: list[int]) -> AttentionLayout:
        """Plain causal rows, right-padded: one block per row, its keys the row itself."""
        width, starts = max(lengths), itertools.accumulate([0, *lengths])
        slots = torch.zeros(len(lengths), width, dtype=torch.long)
        for row, (start, length) in enumerate(zip(starts, lengths)):
            slots[row, :length] = torch.arange(start, start + length)
        back = torch.cat([torch.arange(length) + row * width for row, length in enumerate(lengths)])
        return AttentionLayout(slots.view(-1), slots.view(-1), back, None, (len(lengths), width, width))

    @staticmethod
    def tree(rows: list[PackedRequest]) -> AttentionLayout:
        """Prefix-tree rows by blocks of QUERY_BLOCK tokens, each block's keys the union of its
        tokens' ancestors: a token sees ~40 ancestors of a 256-token row, so full rows would waste
        most of the attention."""
        queries, keys, masks, start = [], [], [], 0
        for packed in rows:
            mask = _attention_mask(packed.parents, len(packed.parents))
            for lo in range(0, len(mask), QUERY_BLOCK):
                block = mask[lo:lo + QUERY_BLOCK]
                seen = block.any(0).nonzero()[:, 0]
                queries.append(torch.arange(lo, lo + len(block)) + start)
                keys.append(seen + start)
                masks.append(block[:, seen])
            start += len(mask)
        width = max(len(k) for k in keys)
        query_slots = torch.zeros(len(queries), QUERY_BLOCK, dtype=torch.long)
        key_slots = torch.zeros(len(keys), width, dtype=torch.long)
        visible = torch.zeros(len(keys), QUERY_BLOCK, width, dtype=torch.bool)
        visible[:, :, 0] = True  # padding queries see one key (no all-masked softmax row)
        for block, (query, key, seen) in enumerate(zip(queries, keys, masks)):
            query_slots[block, : len(query)], key_slots[block, : len(key)] = query, key
            visible[block, : len(query)] = False
            visible[block, : len(query), : len(key)] = seen
        back = torch.cat([torch.arange(len(q)) + block * QUERY_BLOCK for block, q in enumerate(queries)])
        mask = torch.zeros(visible.shape).masked_fill_(~visible, float("-inf"))[:, None]
        return AttentionLayout(query_slots.view(-1), key_slots.view(-1), back, mask,
                               (len(queries), QUERY_BLOCK, width))

    def to(self, device: torch.device, dtype: torch.dtype) -> AttentionLayout:
        """This layout on the model's device, the mask in the model's dtype (as SDPA asks)."""
        return AttentionLayout(self.queries.to(device), self.keys.to(device), self.back.to(device),
                               None if self.mask is None else self.mask.to(device, dtype), self.shape)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
        """SDPA of [tokens, heads, d] queries, keys and values in this layout: [tokens, heads * d]."""
        blocks, block, width = self.shape
        query = query.index_select(0, self.queries).view(blocks, block, *query.shape[1:]).transpose(1, 2)
        key, value = (x.index_select(0, self.keys).view(blocks, width, *x.shape[1:]).transpose(1, 2)
                      for x in (key, value))
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=self.mask, is_causal=self.mask is None, scale=scale, enable_gqa=True)
        return out.transpose(1, 2).reshape(blocks * block, -1).index_select(0, self.back)


class PackedDecoder:
    """A Llama-family HF decoder run on the real tokens of a batch of rows, with the model's own modules.

    Embedding, norms, projections and MLPs see the rows' tokens concatenated ([tokens, hidden]),
    so no padding is computed; attention takes an ``AttentionLayout`` (tree rows by blocks of
    queries with their ancestors only; causal rows whole). Rotary embeddings come from the model's
    ``rotary_emb`` at the tokens' positions, so RoPE scaling is the model's. Same numbers as the
    model's own forward up to float rounding (attention sums over fewer masked keys; relative
    1e-6 in ``tests/test_evaluation_scoring.py``).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.decoder = model.get_decoder()
        attention = self.decoder.layers[0].self_attn
        self.head_dim, self.scale = attention.head_dim, attention.scaling

    def __call__(self, rows: list[PackedRequest]) -> tuple[torch.Tensor, list[int]]:
        """Final hidden states [1, tokens, h] of the rows' tokens, and where each row starts."""
        weight = self.decoder.embed_tokens.weight
        device = weight.device
        lengths = [len(p.input_ids) for p in rows]
        causal = all(is_causal_chain(p) for p in rows)
        layout = (AttentionLayout.causal(lengths) if causal else AttentionLayout.tree(rows)).to(device, weight.dtype)
        inputs = torch.tensor([t for p in rows for t in p.input_ids], device=device)
        positions = torch.tensor([i for p in rows for i in p.positions], device=device)
        hidden = self.decoder.embed_tokens(inputs)  # [t, h]
        cos, sin = (x[0, :, None] for x in self.decoder.rotary_emb(hidden, positions[None]))  # [t, 1, d]
        half = self.head_dim // 2

        def attend(attention, x: torch.Tensor) -> torch.Tensor:
            query, key, value = (proj(x).view(len(x), -1, self.head_dim)  # [t, n, d]
                                 for proj in (attention.q_proj, attention.k_proj, attention.v_proj))
            # RoPE as the model computes it: y * cos + rotate_half(y) * sin
            query, key = ((y * cos).add_(torch.cat((-y[..., half:], y[..., :half]), -1).mul_(sin))
                          for y in (query, key))
            return attention.o_proj(layout.attend(query, key, value, self.scale))

        def mlp(mlp, x: torch.Tensor) -> torch.Tensor:  # down(silu(gate(x)) * up(x)), in place
            gate = torch.nn.functional.silu(mlp.gate_proj(x), inplace=True)
            return mlp.down_proj(gate.mul_(mlp.up_proj(x)))

        for layer in self.decoder.layers:
            hidden += attend(layer.self_attn, layer.input_layernorm(hidden))
            hidden += mlp(layer.mlp, layer.post_attention_layernorm(hidden))
        return self.decoder.norm(hidden)[None], list(itertools.accumulate([0, *lengths[:-1]]))


def target_logprobs(head, hidden: torch.Tensor, targets: list[tuple[int, int, int]],
                    vocab_size: int | None = None) -> torch.Tensor:
    """float64 log-softmax of ``head(hidden[row, index])`` at each target token.

    The head runs once per distinct (row, index), LOGIT_CHUNK positions at a time (a question's
    choices are all predicted from its last context token); ``vocab_size`` cuts the logits to the
    real vocabulary (a megatron model's is padded).
    """
    if not targets:  # a pipeline microbatch of padding rows only
        return torch.empty(0, dtype=torch.float64)
    slots: dict[tuple[int, int], int] = {}
    target_slots = torch.tensor([slots.setdefault((row, index), len(slots)) for row, index, _ in targets])
    tokens = torch.tensor([t[2] for t in targets])
    rows, cols = (torch.tensor(c, device=hidden.device) for c in zip(*slots))
    out = torch.empty(len(targets), dtype=torch.float64)
    for lo in range(0, len(slots), LOGIT_CHUNK):
        logits = head(hidden[rows[lo:lo + LOGIT_CHUNK], cols[lo:lo + LOGIT_CHUNK]]).float()  # [p, vocab]
        if vocab_size is not None:
            logits = logits[:, :vocab_size]
        mine = ((target_slots >= lo) & (target_slots < lo + LOGIT_CHUNK)).nonzero()[:, 0]
        at = (target_slots[mine] - lo).to(logits.device)
        picked = torch.log_softmax(logits, dim=-1)[at, tokens[mine].to(logits.device)]
        out[mine] = picked.double().cpu()
    return out


def _tree_rows(requests: list[tuple[list[int], list[list[int]]]], limit: int,
               row_tokens: int) -> tuple[list[PackedRequest], list[list[int]]]:
    """Requests in token order, each row one prefix tree of at most ``row_tokens`` tokens (a longer
    request alone); neighbours in that order share their leading tokens. Rows and their requests."""
    rows, groups, tree, group = [], [], _TreeBuilder(), []
    for index in sorted(range(len(requests)), key=lambda i: requests[i]):
        length, num_targets = len(tree.keys), len(tree.row.targets)
        tree.add(*requests[index], limit)
        if group and len(tree.keys) > row_tokens:
            tree.undo(length, num_targets)
            rows.append(tree.row)
            groups.append(group)
            tree, group = _TreeBuilder(), []
            tree.add(*requests[index], limit)
        group.append(index)
    if group:
        rows.append(tree.row)
        groups.append(group)
    return rows, groups


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

    With a scorer that takes prefix-tree rows (``row_tokens``) requests in token order share them; otherwise each
    continuation is its own causal row ``context + continuation[:-1]``. Both predict every
    continuation token from exactly the same tokens, so they give the same log-likelihoods.
    """
    if isinstance(scorer, torch.nn.Module):  # a bare Hugging Face model
        scorer = HFScorer(scorer)
    if scorer.row_tokens is not None:
        rows, groups = _tree_rows(requests, scorer.max_length, scorer.row_tokens)
        owners = [[(i, k) for i in group for k in range(len(requests[i][1]))] for group in groups]
    else:
        rows, owners = [], []
        for i, (context, continuations) in enumerate(requests):
            for k, continuation in enumerate(continuations):
                rows.append(pack([(context, [continuation])], scorer.max_length))
                owners.append([(i, k)])
    scores: list[list[ContinuationScore | None]] = [[None] * len(c) for _, c in requests]
    for batch in _batches(rows, tokens_per_batch):
        targets = [(b, index, token) for b, row in enumerate(batch)
                   for t in rows[row].targets for index, token in t]
        logprobs = scorer([rows[row] for row in batch], targets).tolist()
        at = 0
        for row in batch:
            for (request, choice), t in zip(owners[row], rows[row].targets, strict=True):
                scores[request][choice] = ContinuationScore(sum(logprobs[at:at + len(t)]), len(t))
                at += len(t)
        if progress is not None:
            progress(len(targets))
    return scores  # type: ignore[return-value]
