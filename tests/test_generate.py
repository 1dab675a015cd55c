"""generate: greedy equals a step-by-step argmax, sampling repeats with a seed, streaming, CLI."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from megatron_telecom.evaluation.generation import chat_prompt, generate
from megatron_telecom.evaluation.model_source import load_model

PROMPT = "The UE starts timer T300 when"


@pytest.fixture(scope="module")
def tiny(evaluation_tiny_model):
    return load_model(evaluation_tiny_model)


def test_greedy_equals_argmax_decoding_and_streams_the_same_text(tiny):
    ids = tiny.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, tiny.model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    expected = tiny.tokenizer.decode(ids[0, -8:], skip_special_tokens=True)
    stream = io.StringIO()
    assert generate(tiny, PROMPT, max_new_tokens=8, stream=stream) == expected
    assert stream.getvalue() == expected + "\n"


def test_sampling_repeats_with_a_seed_and_varies_without(tiny):
    first = generate(tiny, PROMPT, max_new_tokens=12, temperature=1.0, top_p=0.95, seed=3, stream=None)
    assert generate(tiny, PROMPT, max_new_tokens=12, temperature=1.0, top_p=0.95, seed=3, stream=None) == first
    others = {generate(tiny, PROMPT, max_new_tokens=12, temperature=1.0, seed=s, stream=None) for s in range(4)}
    assert len(others) > 1


def test_chat_answers_the_prompt_rendered_by_the_tokenizer_chat_template(tiny, monkeypatch):
    text = tiny.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                              add_generation_prompt=True)
    assert chat_prompt(tiny.tokenizer, PROMPT) == text and text.endswith("<|im_start|>assistant\n")
    ids = torch.tensor([tiny.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}],
                                                           add_generation_prompt=True)["input_ids"]])
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, tiny.model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    expected = tiny.tokenizer.decode(ids[0, -8:], skip_special_tokens=True)
    assert generate(tiny, PROMPT, max_new_tokens=8, stream=None, chat=True) == expected
    assert expected != generate(tiny, PROMPT, max_new_tokens=8, stream=None)
    monkeypatch.setattr(tiny.tokenizer, "chat_template", None)
    with pytest.raises(ValueError, match="--chat: the model's tokenizer has no chat template"):
        generate(tiny, PROMPT, chat=True)


def test_bad_settings_are_refused(tiny):
    with pytest.raises(ValueError, match="--max-new-tokens 0"):
        generate(tiny, PROMPT, max_new_tokens=0)
    with pytest.raises(ValueError, match="--top-p 0"):
        generate(tiny, PROMPT, top_p=0)


def test_tool_streams_prompt_and_completion(evaluation_tiny_model):
    tool = Path(__file__).resolve().parents[1] / "tools" / "generate.py"
    done = subprocess.run([sys.executable, str(tool), "--model", str(evaluation_tiny_model), PROMPT,
                           "--max-new-tokens", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(PROMPT) and len(done.stdout) > len(PROMPT) + 1
    done = subprocess.run([sys.executable, str(tool), "--model", str(evaluation_tiny_model), PROMPT, "--chat",
                           "--max-new-tokens", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"user: {PROMPT}\nassistant: ") and done.stdout.endswith("\n")
    done = subprocess.run([sys.executable, str(tool), "--model", "/nonexistent", PROMPT],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "no such folder" in done.stderr
