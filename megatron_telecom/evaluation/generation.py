"""Text completion from any model source, streamed token by token.

Greedy when ``temperature`` is 0 (the default), otherwise sampling with temperature and nucleus
(top-p) filtering; ``seed`` makes sampling repeatable. The prompt is tokenized with the
tokenizer's special tokens (BOS where the model uses one), as the model saw text in training.
With ``chat`` it is one user message rendered by the tokenizer's own chat template with the
generation prompt, as tools/preprocess_sft.py renders conversations for SFT.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import torch

from megatron_telecom.evaluation.model_source import LoadedModel


class _Streamer:
    """Receives generated ids from ``generate`` and writes the new text as it becomes complete."""

    def __init__(self, tokenizer, out: TextIO):
        self.tokenizer, self.out = tokenizer, out
        self.ids: list[int] = []
        self.printed = 0
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(int(t) for t in value.reshape(-1))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            self.out.write(text[self.printed:])
            self.out.flush()
            self.printed = len(text)

    def end(self) -> None:
        self.out.write("\n")
        self.out.flush()


def chat_prompt(tokenizer: Any, message: str, system: str = "") -> str:
    """``message`` as one user turn (after a ``system`` turn when given) rendered by the tokenizer's
    chat template, assistant turn opened."""
    if not tokenizer.chat_template:
        raise ValueError("--chat: the model's tokenizer has no chat template (chat_template.jinja or "
                         "tokenizer_config.json); drop --chat to complete plain text")
    messages = [{"role": "system", "content": system}] if system else []
    return tokenizer.apply_chat_template([*messages, {"role": "user", "content": message}], tokenize=False,
                                         add_generation_prompt=True)


def generate(model: LoadedModel, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
             top_p: float = 1.0, seed: int | None = None, stream: TextIO | None = sys.stdout,
             chat: bool = False) -> str:
    """The completion of ``prompt`` (without the prompt), streamed to ``stream`` when given;
    ``chat``: the assistant's answer to ``prompt`` sent as a user message."""
    if max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {max_new_tokens}: give at least 1")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"--temperature {temperature} / --top-p {top_p}: need temperature >= 0 and 0 < top-p <= 1")
    if seed is not None:
        torch.manual_seed(seed)
    text = chat_prompt(model.tokenizer, prompt) if chat else prompt
    # a rendered template already holds its special tokens (BOS included where it has one)
    inputs = model.tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(model.device)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 \
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.inference_mode():
        output = model.model.generate(
            **inputs, max_new_tokens=max_new_tokens, streamer=_Streamer(model.tokenizer, stream) if stream else None,
            pad_token_id=model.tokenizer.pad_token_id or model.tokenizer.eos_token_id, **sampling)
    return model.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
