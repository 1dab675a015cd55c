#!/usr/bin/env python3
"""Preference JSONL (TRL's prompt/chosen/rejected) -> DPO pairs (tokens + loss mask .bin/.idx), with provenance."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.preference import DPOPreprocessConfig, run_preprocess_dpo

CONFIG = DPOPreprocessConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_preprocess_dpo, argv, prog="tools/preprocess_dpo.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
