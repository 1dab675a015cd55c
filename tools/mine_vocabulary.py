#!/usr/bin/env python3
"""Mine telecom vocabulary: the terms whose one-token form saves the most tokens, for review and tools/extend_tokenizer.py."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.vocab_mining import MineVocabularyConfig, run_mine

CONFIG = MineVocabularyConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_mine, argv, prog="tools/mine_vocabulary.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
