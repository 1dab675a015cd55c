#!/usr/bin/env python3
"""Training JSONL (CPT documents, SFT rows, DPO pairs) -> the rows that share no 13-gram with a benchmark
(TeleQnA, ORAN-Bench-13K, your exams), or every row flagged; a JSON report of the hits (docs/curation.md)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.decontamination import DecontaminateConfig, run_decontaminate

CONFIG = DecontaminateConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_decontaminate, argv, prog="tools/decontaminate.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
