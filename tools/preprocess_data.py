#!/usr/bin/env python3
"""JSONL -> Megatron indexed dataset (.bin/.idx), with Megatron-LM's flags and byte-identical output."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.preprocess import PreprocessConfig, run_preprocess

CONFIG = PreprocessConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_preprocess, argv, prog="tools/preprocess_data.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
