#!/usr/bin/env python3
"""Write the general (non-telecom) English corpus that ships with Python as JSONL (no download)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.general_corpus import GeneralCorpusConfig, run_general_corpus

CONFIG = GeneralCorpusConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_general_corpus, argv, prog="tools/general_corpus.py",
                           description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
