#!/usr/bin/env python3
"""Split JSONL documents into train.jsonl and heldout.jsonl by a hash of each document's id."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.heldout import SplitHeldoutConfig, run_split

CONFIG = SplitHeldoutConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_split, argv, prog="tools/split_heldout.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
