#!/usr/bin/env python3
"""Checkpoint conversion: Hugging Face <-> Megatron (torch_dist), and a logits check of the two."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.convert.cli import COMMANDS, RUNS

CONFIG = COMMANDS


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one 'error:' line and exit code 2."""
    return run_entry_point(CONFIG, RUNS, argv, prog="convert_checkpoint.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
