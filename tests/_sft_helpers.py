"""Helpers for the SFT training tests: synthetic packed SFT datasets and the per-token loss probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from megatron_telecom.data.packing import pack
from megatron_telecom.data.sft import Conversations, write_packed

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "_sft_probe.py"


def synthetic_conversations(*, count: int = 12, vocab_size: int = 511, seed: int = 0,
                            min_len: int = 8, max_len: int = 30) -> Conversations:
    """Random conversations: a prompt run (mask 0) then an answer run (mask 1), some twice over."""
    rng = np.random.default_rng(seed)
    found = Conversations()
    for _ in range(count):
        length = int(rng.integers(min_len, max_len))
        mask = np.zeros(length, dtype=np.uint8)
        turns = 1 + int(rng.integers(0, 2))
        for start in np.sort(rng.choice(np.arange(2, length - 1), size=turns, replace=False)):
            mask[start:start + int(rng.integers(1, 6))] = 1
        found.tokens.append(rng.integers(0, vocab_size, size=length).astype(np.uint16))
        found.masks.append(mask)
    return found


def write_sft_dataset(prefix: Path, found: Conversations, *, seq_length: int,
                      packing: str = "bfd") -> Path:
    """``found`` packed (bfd) or one per sequence (none) as tools/preprocess_sft.py writes it."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    bins = pack([len(t) for t in found.tokens], seq_length, packing)
    write_packed(str(prefix), found, bins, np.uint16)
    return prefix


def sft_train_args(prefix: Path, **flags: object) -> dict[str, object]:
    """Flags (as tiny_train_args takes them) of a tiny SFT run on ``prefix``."""
    return {"stage": "sft", "data_path": None, "sft_data_path": str(prefix), "split": None,
            "data_cache_path": None, "eval_interval": 0, "lr_warmup_iters": None,
            "lr_decay_style": "constant", **flags}


def read_token_losses(path: Path) -> dict[str, list[float]]:
    """{conversation tokens as text: losses of its trained tokens} written by the probe."""
    return json.loads(Path(path).read_text())
