#!/usr/bin/env python3
"""Extend a tokenizer with the best mined terms (new BPE merges / SentencePiece pieces; old ids unchanged) + vocab_extension.json."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.vocab_extension import ExtendTokenizerConfig, run_extend

CONFIG = ExtendTokenizerConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_extend, argv, prog="tools/extend_tokenizer.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
