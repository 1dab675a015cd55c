"""A tokenizer's own chat template, and the assistant-only loss mask built by rendering prefixes.

Why prefixes: a template without ``{% generation %}`` tags (SmolLM2's, most Llama/Mistral ones)
gives Hugging Face's ``return_assistant_tokens_mask`` nothing to mark, and tools that trust it train
on every token (Megatron-Bridge #3359). We never read tags. For a region of messages ``[a, b)`` that
is trained on (each assistant message of a chat row; the completion of a prompt/completion row):

- ``full`` = tokens of the whole conversation; ``before`` = tokens of ``messages[:a]``;
  ``header`` = tokens of ``messages[:a]`` with the generation prompt; ``through`` = tokens of
  ``messages[:b]``;
- ``before`` and ``through`` must be token prefixes of ``full`` (the prefix property), otherwise
  the conversation is refused: the template renders a turn differently once later turns follow,
  so no honest per-token mask exists;
- the mask is 1 on ``full[start:len(through)]`` with ``start`` = max(len(before), the common
  prefix of ``header`` and ``full``) -- the generation prompt (``<|im_start|>assistant\\n``) is
  context, the answer and its end-of-turn tokens are trained. This is TRL's ``completion_mask``
  rule, applied to every assistant turn.
- the first token of a conversation is never 1: nothing before it predicts it.

A default system prompt the template injects (SmolLM2: when the first message is not a system
message) is rendered in every prefix alike, so it lands in the context, never in the mask. A region
that starts at message 0 is refused (``assistant_first``): nothing renders "before" it, so an
injected system prompt could not be told apart from the answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Message = dict[str, str]
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


class Refused(ValueError):
    """A conversation that cannot be trained on; ``reason`` is the counted refusal reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple:  # crosses process boundaries (--workers) with both fields
        return Refused, (self.reason, self.detail)


def read_chat_template(folder: Path) -> str | None:
    """The template a tokenizer folder ships: chat_template.jinja, else tokenizer_config.json's."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):  # named variants: [{"name": "default", "template": ...}, ...]
            template = {t["name"]: t["template"] for t in template}.get("default")
        return template
    return None


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def _is_prefix(prefix: list[int], full: list[int]) -> bool:
    return len(prefix) <= len(full) and full[: len(prefix)] == prefix


@dataclass(frozen=True)
class Tokenized:
    """One conversation: token ids and the 0/1 loss mask over them (uint8)."""

    tokens: list[int]
    loss_mask: np.ndarray


class ChatRenderer:
    """Renders conversations through a Hugging Face tokenizer's chat template and tokenizes them
    as ``apply_chat_template(tokenize=True)`` does (special tokens in the text, none added)."""

    def __init__(self, tokenizer_folder: Path, chat_template: str | Path | None = None) -> None:
        from transformers import AutoTokenizer

        self.folder = Path(tokenizer_folder)
        self.hf = AutoTokenizer.from_pretrained(str(tokenizer_folder))
        if chat_template is not None:
            path = Path(chat_template)
            if not path.is_file():
                raise ValueError(f"--chat-template {path}: no such file")
            self.template, self.template_source = path.read_text(encoding="utf-8"), str(path.resolve())
        else:
            self.template, self.template_source = read_chat_template(Path(tokenizer_folder)), str(tokenizer_folder)
        if not self.template:
            raise ValueError(f"{tokenizer_folder} has no chat template (no chat_template.jinja and none in "
                             "tokenizer_config.json): give one with --chat-template FILE.jinja")
        self.template_sha256 = hashlib.sha256(self.template.encode()).hexdigest()

    def render(self, messages: list[Message], add_generation_prompt: bool = False) -> str:
        """The template's text for ``messages``; a template error is a refusal."""
        try:
            return self.hf.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                               add_generation_prompt=add_generation_prompt)
        except Exception as exc:  # jinja raises many types, raise_exception() a TemplateError
            raise Refused("template_error", f"{type(exc).__name__}: {exc}") from exc

    def tokenize(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def conversation(self, messages: list[Message], regions: list[tuple[int, int]]) -> Tokenized:
        """Tokens of ``messages`` and a mask that is 1 exactly on the tokens of the message ranges
        ``regions`` (``[a, b)`` each), without their generation prompt; see the module docstring."""
        rendered: dict[tuple[int, bool], list[int]] = {}

        def tokens_of(n: int, add_generation_prompt: bool = False) -> list[int]:
            if (n, add_generation_prompt) not in rendered:
                rendered[n, add_generation_prompt] = self.tokenize(self.render(messages[:n], add_generation_prompt))
            return rendered[n, add_generation_prompt]

        full = tokens_of(len(messages))
        mask = np.zeros(len(full), dtype=np.uint8)
        for a, b in regions:
            if a == 0:  # what the template puts before a first message (a default system prompt?)
                raise Refused("assistant_first", "the conversation opens with an assistant message: no prompt")
            before, through = tokens_of(a), tokens_of(b)
            for name, prefix, n in (("before", before, a), ("through", through, b)):
                if not _is_prefix(prefix, full):
                    at = common_prefix_length(prefix, full)
                    raise Refused("prefix_broken", f"the first {n} messages render differently once later "
                                  f"messages follow ({name} turn {a}, token {at}: "
                                  f"{self.hf.decode(prefix[at:at + 8])!r})")
            header = tokens_of(a, add_generation_prompt=True)
            start = max(len(before), common_prefix_length(header, full))
            mask[start:len(through)] = 1
        mask[:1] = 0  # the first token is never a label (nothing precedes it), whatever the template
        return Tokenized(full, mask)

    def text_completion(self, prompt: str, completion: str) -> Tokenized:
        """TRL's non-conversational prompt/completion: plain text (no template) tokenized as
        ``tokenizer(text)``, EOS appended to the completion, mask 1 after the common prefix."""
        eos = self.hf.eos_token or ""
        if not completion.endswith(eos):
            completion += eos
        prompt_ids = self.hf(text=prompt)["input_ids"]
        full = self.hf(text=prompt + completion)["input_ids"]
        mask = np.zeros(len(full), dtype=np.uint8)
        mask[max(common_prefix_length(prompt_ids, full), 1):] = 1
        return Tokenized(full, mask)

    def identity(self) -> dict[str, Any]:
        """What provenance records about the template."""
        return {"source": self.template_source, "sha256": self.template_sha256,
                "has_generation_tags": bool(_GENERATION_TAG.search(self.template))}
