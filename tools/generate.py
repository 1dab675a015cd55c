#!/usr/bin/env python3
"""Complete a prompt with a model (HF folder, bundled:NAME or megatron checkpoint), streamed."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.evaluation.cli import GenerateConfig, run_generate

CONFIG = GenerateConfig


def main(argv: list[str] | None = None) -> int:
    """Stream the prompt and its completion; bad input is one 'error:' line and exit code 2."""
    return run_entry_point(CONFIG, run_generate, argv, prog="generate.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
