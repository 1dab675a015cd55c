"""Helpers for tests/test_convert_*.py: tiny random HF Llama-family models, probe launches.

Other test files may import this module read-only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from _dist_helpers import REPO, run_ranks

TINY_VOCAB = 512  # NullTokenizer --vocab-size 511 has 512 ids; pads to 512 at TP 1 and 2
_SHAPE = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5)
# name -> (config class, extra config fields)
TINY_VARIANTS = {
    "llama-gqa": ("LlamaConfig", {"rope_parameters": {"rope_type": "default",
                                                      "rope_theta": 10000.0}}),
    "llama3": ("LlamaConfig", {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
    "mistral": ("MistralConfig", {"head_dim": 32, "sliding_window": None,
                                  "rope_parameters": {"rope_type": "default",
                                                      "rope_theta": 1000000.0}}),
    "tied": ("LlamaConfig", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                             "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}),
}
PROBE = REPO / "tests" / "_convert_probe.py"


def write_tiny_hf_model(folder: Path, variant: str, *, vocab_size: int = TINY_VOCAB,
                        seed: int = 0) -> Path:
    """A random tiny HF model of ``variant`` saved as safetensors in ``folder``."""
    import transformers

    config_class, extra = TINY_VARIANTS[variant]
    config = getattr(transformers, config_class)(**{**_SHAPE, "vocab_size": vocab_size, **extra})
    torch.manual_seed(seed)
    architecture = config_class.replace("Config", "ForCausalLM")
    model = getattr(transformers, architecture)(config)
    with torch.no_grad():  # norms away from 1 so a misplaced norm weight shows
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    return folder


def copy_tokenizer(source: Path, target: Path) -> None:
    """Put the tokenizer files of HF folder ``source`` beside the weights in ``target``."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def hf_logits(folder: Path, tokens: torch.Tensor) -> torch.Tensor:
    """transformers' fp32 logits of ``tokens`` [b, s] for the model in ``folder``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(tokens).logits


def run_probe(nproc: int, out: Path, tokens: torch.Tensor | None, args: list[str],
              *, timeout: float = 600) -> dict:
    """Launch tests/_convert_probe.py as ``nproc`` ranks; its record (and ``logits`` if asked)."""
    tokens_arg = "-"
    if tokens is not None:
        tokens_arg = str(out.with_suffix(".tokens.pt"))
        torch.save(tokens, tokens_arg)
    proc = run_ranks(nproc, [str(PROBE), str(out), tokens_arg, *args], timeout=timeout)
    assert proc.returncode == 0, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    record = torch.load(out, weights_only=True)
    logits_path = Path(str(out) + ".logits")
    if logits_path.is_file():
        record["logits"] = torch.load(logits_path, weights_only=True)
    record["stdout"] = proc.stdout
    return record


def write_text_dataset(prefix: Path, tokenizer_folder: Path, jsonl: Path) -> Path:
    """An indexed dataset of ``jsonl``'s "text" fields tokenised by an HF tokenizer (+ EOS)."""
    import json

    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        ids = tokenizer(json.loads(line)["text"])["input_ids"] + [tokenizer.eos_token_id]
        builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
    builder.finalize(f"{prefix}.idx")
    return prefix
