#!/usr/bin/env python3
"""Evaluate a model: perplexity / bits per byte, TeleQnA, shard merge, side-by-side compare."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.evaluation.cli import EVALUATE_COMMANDS, EVALUATE_RUNS

CONFIG = EVALUATE_COMMANDS


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one 'error:' line and exit code 2."""
    return run_entry_point(CONFIG, EVALUATE_RUNS, argv, prog="evaluate.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
