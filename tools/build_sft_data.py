#!/usr/bin/env python3
"""Curated 3GPP / RFC JSONL -> instruction rows (abbreviations, definitions, spec identification; answers
copied from the text) for tools/preprocess_sft.py, and preference pairs with hard negatives for
tools/preprocess_dpo.py (docs/sft.md)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.instructions.builder import BuildSFTConfig, run_build_sft_data

CONFIG = BuildSFTConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_build_sft_data, argv, prog="tools/build_sft_data.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
