#!/usr/bin/env python3
"""Clauses of a curated corpus -> model-written question-answer pairs (a --model source or an
OpenAI-compatible --endpoint), kept only when grounded in the clause, new and within length limits
(docs/sft.md)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.instructions.generated import GenerateQAConfig, run_generate_qa

CONFIG = GenerateQAConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_generate_qa, argv, prog="tools/generate_qa.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
