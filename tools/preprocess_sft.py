#!/usr/bin/env python3
"""Chat / prompt-completion JSONL -> packed SFT dataset (tokens + loss mask .bin/.idx), with provenance."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.sft import SFTPreprocessConfig, run_preprocess_sft

CONFIG = SFTPreprocessConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_preprocess_sft, argv, prog="tools/preprocess_sft.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
