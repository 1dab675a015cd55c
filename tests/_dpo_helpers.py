"""Helpers for the DPO tests: synthetic pair datasets and the reference-pass / training flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megatron_telecom.data.sft import Conversations, write_packed


def synthetic_pairs(*, count: int = 8, vocab_size: int = 511, seed: int = 0,
                    prompt_lengths: tuple[int, int] = (4, 12),
                    completion_lengths: tuple[int, int] = (3, 10)) -> Conversations:
    """Random pairs: one prompt (mask 0), then two different completions (mask 1), chosen first.

    Lengths are drawn from [low, high) (the GPU kit's speed runs ask for long pairs)."""
    rng = np.random.default_rng(seed)
    found = Conversations()
    for _ in range(count):
        prompt = rng.integers(0, vocab_size, size=int(rng.integers(*prompt_lengths)))
        for _half in range(2):
            completion = rng.integers(0, vocab_size, size=int(rng.integers(*completion_lengths)))
            found.tokens.append(np.concatenate([prompt, completion]).astype(np.uint16))
            found.masks.append(np.r_[np.zeros(len(prompt)), np.ones(len(completion))].astype(np.uint8))
    return found


def write_dpo_dataset(prefix: Path, found: Conversations) -> Path:
    """``found`` as tools/preprocess_dpo.py writes it: one document per pair, chosen then rejected."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_packed(str(prefix), found, [[2 * i, 2 * i + 1] for i in range(len(found.tokens) // 2)], np.uint16)
    return prefix


def dpo_train_args(prefix: Path, **flags: object) -> dict[str, object]:
    """Flags (as tiny_train_args takes them) of a tiny DPO run on ``prefix``."""
    return {"stage": "dpo", "data_path": None, "dpo_data_path": str(prefix), "split": None,
            "data_cache_path": None, "eval_interval": 0, "lr_warmup_iters": None,
            "lr_decay_style": "constant", **flags}
