#!/usr/bin/env python3
"""Merge several indexed datasets into one (Megatron-LM's tools/merge_datasets.py flags)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.indexed import MergeDatasetsConfig, run_merge

CONFIG = MergeDatasetsConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_merge, argv, prog="tools/merge_datasets.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
