"""Batched greedy generation for open-ended evaluation, with stop sequences and a token limit.

Prompts are encoded as lm-evaluation-harness's ``hf`` backend encodes a ``generate_until`` context
(the tokenizer's default special tokens), or with ``chat`` rendered by the tokenizer's chat template
(an optional system message first). Generation is greedy, on the HF model's own forward with its
KV cache, left-padded rows. A row stops at an end-of-sequence token, when its decoded text contains
a stop sequence, or at ``max_new_tokens``; its text is the decoded tokens cut before the first stop
sequence, as lm-eval cuts them.

Decision (speed): continuous batching. A row that ends leaves the batch at once (its cache rows are
dropped) and waiting prompts, longest first, are prefilled and join the running rows (both caches
left-padded to one length). HF ``generate`` (and lm-eval through it) carries finished rows to the
end of their batch, which on short answers is most of its work. The answers stay token-identical
to ``generate`` run one prompt at a time (tests) and to lm-eval's (benchmarks/bench_generative.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from megatron_telecom.evaluation.open_questions import OpenQuestion

if TYPE_CHECKING:  # torch is imported when generation starts, not when the config is parsed
    import torch

    from megatron_telecom.evaluation.model_source import LoadedModel


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """How answers are generated."""

    max_new_tokens: int = 64
    """Tokens to generate at most per answer."""
    until: tuple[str, ...] = ("\n\n", "Question:")
    """Stop sequences: an answer ends before the first of them (end of sequence always stops; "\\n" is a newline)."""
    batch_size: int = 16
    """Prompts generated together."""
    chat: bool = False
    """Render each prompt as a user message with the tokenizer's chat template (and its system message)."""

    def __post_init__(self) -> None:
        # "\\n" typed on a command line means a newline
        object.__setattr__(self, "until", tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in self.until))
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens {self.max_new_tokens}: give at least 1")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: give at least 1")
        if any(not s for s in self.until):
            raise ValueError("--until: a stop sequence cannot be empty")


@dataclass(frozen=True)
class Completion:
    """A generated answer: its tokens (through the one that ended it), its text, and why it ended."""

    ids: tuple[int, ...]
    text: str
    finish: str
    """eos, stop (a stop sequence) or length (max_new_tokens)."""


def encode_prompt(tokenizer, question: OpenQuestion, chat: bool) -> list[int]:
    """Token ids of a question's prompt: plain text with the tokenizer's default special tokens,
    or (``chat``) the chat template's rendering, which holds its own special tokens."""
    from megatron_telecom.evaluation.generation import chat_prompt

    if not chat:
        return tokenizer(question.prompt)["input_ids"]
    return tokenizer(chat_prompt(tokenizer, question.prompt, question.system), add_special_tokens=False)["input_ids"]


def cut_at_stop(text: str, until: tuple[str, ...]) -> str:
    """``text`` before the first of the stop sequences (lm-eval: ``text.split(stop)[0]`` for each)."""
    for stop in until:
        text = text.split(stop)[0]
    return text


def eos_token_ids(model: LoadedModel) -> set[int]:
    """Tokens that end a sequence: the tokenizer's and the generation config's end of sequence."""
    ids = {model.tokenizer.eos_token_id} - {None}
    configured = getattr(getattr(model.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    return ids


class _Row:
    """One prompt being answered: its generated ids and whether (and why) it has ended."""

    def __init__(self, index: int):
        self.index, self.ids, self.finish = index, [], ""

    def step(self, token: int, decode: Callable[[list[int]], str], config: GenerationConfig, eos: set[int]) -> bool:
        """Take the next token; True when the row has ended."""
        self.ids.append(token)
        if token in eos:
            self.finish = "eos"
        elif config.until and any(stop in decode(self.ids) for stop in config.until):
            self.finish = "stop"
        elif len(self.ids) >= config.max_new_tokens:
            self.finish = "length"
        return bool(self.finish)


class _Batch:
    """The rows being generated together: their KV cache, attention mask over it ``[b, cached]``,
    the position of each row's pending token ``[b]``, and the pending tokens (taken, not yet fed)."""

    def __init__(self, cache, mask: torch.Tensor, positions: torch.Tensor, pending: list[int], rows: list[_Row]):
        self.cache, self.mask, self.positions, self.pending, self.rows = cache, mask, positions, pending, rows

    def keep(self, index: list[int]) -> None:
        """Keep only the rows at ``index`` (the others ended)."""
        import torch

        if len(index) < len(self.rows):
            selected = torch.tensor(index, dtype=torch.long, device=self.mask.device)
            self.cache.batch_select_indices(selected)
            self.mask, self.positions = self.mask[selected], self.positions[selected]
            self.pending, self.rows = [self.pending[i] for i in index], [self.rows[i] for i in index]

    def trim(self) -> None:
        """Drop the leading cache columns that no row attends to (left padding of rows that left)."""
        unused = int(self.mask.any(0).int().argmax()) if self.mask.any() else 0
        if unused:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
            self.mask = self.mask[:, unused:]

    def merge(self, other: _Batch) -> None:
        """Append ``other``'s rows: both caches left-padded to the same length, then joined."""
        import torch
        import torch.nn.functional as F

        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            for name in ("keys", "values"):
                a, b = getattr(mine, name), getattr(theirs, name)  # [b, heads, cached, head_dim]
                setattr(mine, name, torch.cat([F.pad(a, (0, 0, width - a.shape[2], 0)),
                                               F.pad(b, (0, 0, width - b.shape[2], 0))]))
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)),
                               F.pad(other.mask, (width - other.mask.shape[1], 0))])
        self.positions = torch.cat([self.positions, other.positions])
        self.pending, self.rows = self.pending + other.pending, self.rows + other.rows


class _Generator:
    """Greedy continuous batching: up to ``batch_size`` rows run together; rows that end leave at
    once, and waiting prompts (longest first) are prefilled and join when a quarter of the rows are free."""

    def __init__(self, model: LoadedModel, config: GenerationConfig, decode: Callable[[list[int]], str],
                 progress: Callable[[int], None] | None = None):
        self.model, self.config, self.decode, self.progress = model, config, decode, progress
        self.eos = eos_token_ids(model)
        tokenizer = model.tokenizer
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> list[int]:
        logits = self.model.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                                  use_cache=True, logits_to_keep=1).logits[:, -1]  # [b, vocab]
        return logits.argmax(-1).tolist()

    def _step(self, batch: _Batch, tokens: list[int]) -> None:
        """Give each row its next token; rows that end leave the batch."""
        batch.pending = tokens
        running = [i for i, (row, t) in enumerate(zip(batch.rows, tokens))
                   if not row.step(t, self.decode, self.config, self.eos)]
        if self.progress and len(running) < len(tokens):
            self.progress(len(tokens) - len(running))
        batch.keep(running)

    def prefill(self, prompts: list[list[int]], rows: list[_Row]) -> _Batch:
        """A batch of new rows: their prompts (left-padded) through the model, first tokens taken."""
        import torch
        from transformers import DynamicCache

        device, width = self.model.device, max(map(len, prompts))
        ids = torch.tensor([[self.pad] * (width - len(p)) + p for p in prompts], device=device)  # [b, s]
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        cache = DynamicCache(config=self.model.model.config)
        batch = _Batch(cache, mask, positions[:, -1] + 1, [], rows)
        self._step(batch, self._forward(ids, mask, positions, cache))
        return batch

    def decode_step(self, batch: _Batch) -> None:
        """Feed every row's pending token; take the next."""
        import torch

        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], dim=1)
        ids = torch.tensor(batch.pending, device=batch.mask.device)[:, None]
        tokens = self._forward(ids, batch.mask, batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        self._step(batch, tokens)

    def run(self, prompts: list[list[int]]) -> list[_Row]:
        """Every prompt's row, ended, in the prompts' order."""
        rows = [_Row(i) for i in range(len(prompts))]
        if not rows:
            return rows
        waiting = sorted(rows, key=lambda r: -len(prompts[r.index]))  # longest first, as lm-eval orders them
        size, batch = self.config.batch_size, None
        while waiting or batch.rows:
            free = size - (len(batch.rows) if batch else 0)
            if waiting and (free == size or free >= min(size // 4 or 1, len(waiting))):
                joining, waiting = waiting[:free], waiting[free:]
                new = self.prefill([prompts[r.index] for r in joining], joining)
                if batch is None or not batch.rows:
                    batch = new
                elif new.rows:
                    batch.merge(new)
            else:
                self.decode_step(batch)
            batch.trim()
        return rows


def greedy_generate(model: LoadedModel, prompts: list[list[int]], config: GenerationConfig,
                    progress: Callable[[int], None] | None = None) -> list[Completion]:
    """The greedy completion of every prompt (token ids), in the prompts' order."""
    import torch

    def decode(ids: list[int]) -> str:
        return model.tokenizer.decode(ids, skip_special_tokens=True)

    with torch.inference_mode():
        rows = _Generator(model, config, decode, progress).run(prompts)
    return [Completion(tuple(r.ids), cut_at_stop(decode(r.ids), config.until), r.finish) for r in rows]
