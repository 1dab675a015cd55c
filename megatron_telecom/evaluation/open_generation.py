"""Batched greedy generation for open-ended evaluation, with stop sequences and a token limit.

Prompts are encoded as lm-evaluation-harness's ``hf`` backend encodes a ``generate_until`` context
(the tokenizer's default special tokens), or with ``chat`` rendered by the tokenizer's chat template
(an optional system message first). Generation is greedy and runs in batches of prompts of similar
length (longest first), left-padded, on the HF model's own forward with its KV cache. A row stops
at an end-of-sequence token, when its decoded text contains a stop sequence, or at
``max_new_tokens``; its text is the decoded tokens cut before the first stop sequence, as lm-eval
cuts them.

Decision (speed): a finished row leaves the batch at once (its cache rows are dropped), so the
rows still running no longer pay for it; HF ``generate`` (and lm-eval through it) carries finished
rows to the end of their batch.
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


def _left_padded(prompts: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def _generate_batch(model: LoadedModel, prompts: list[list[int]], config: GenerationConfig, eos: set[int],
                    decode: Callable[[list[int]], str]) -> list[_Row]:
    """Greedy answers of one batch; a row leaves the batch (and its cache rows) when it ends."""
    import torch
    from transformers import DynamicCache

    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else min(eos)
    ids, mask = _left_padded(prompts, pad, model.device)  # [b, s]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = DynamicCache(config=model.model.config)
    rows, active = [_Row(i) for i in range(len(prompts))], list(range(len(prompts)))
    while True:
        logits = model.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True, logits_to_keep=1).logits[:, -1]  # [b, vocab]
        tokens = logits.argmax(-1).tolist()
        keep = [i for i, (row, t) in enumerate(zip(active, tokens)) if not rows[row].step(t, decode, config, eos)]
        if not keep:
            return rows
        if len(keep) < len(active):
            index = torch.tensor(keep, device=model.device)
            cache.batch_select_indices(index)
            mask, positions = mask[index], positions[index]
            active, tokens = [active[i] for i in keep], [tokens[i] for i in keep]
        ids = torch.tensor(tokens, device=model.device)[:, None]
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        positions = positions[:, -1:] + 1


def greedy_generate(model: LoadedModel, prompts: list[list[int]], config: GenerationConfig,
                    progress: Callable[[int], None] | None = None) -> list[Completion]:
    """The greedy completion of every prompt (token ids), in the prompts' order."""
    def decode(ids: list[int]) -> str:
        return model.tokenizer.decode(ids, skip_special_tokens=True)

    import torch

    eos = eos_token_ids(model)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths batch together
    completions: list[Completion | None] = [None] * len(prompts)
    for start in range(0, len(order), config.batch_size):
        batch = order[start: start + config.batch_size]
        with torch.inference_mode():
            rows = _generate_batch(model, [prompts[i] for i in batch], config, eos, decode)
        for row in rows:
            completions[batch[row.index]] = Completion(tuple(row.ids), cut_at_stop(decode(row.ids), config.until),
                                                       row.finish)
        if progress:
            progress(len(batch))
    return completions
