#!/usr/bin/env python3
"""Print what an indexed dataset holds: documents, tokens, length histogram and decoded samples.

Without --tokenizer-type, samples are decoded with the tokenizer named in the dataset's .json."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.inspection import InspectDataConfig, run_inspect

CONFIG = InspectDataConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_inspect, argv, prog="tools/inspect_data.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
