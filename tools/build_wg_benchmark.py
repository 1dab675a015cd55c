#!/usr/bin/env python3
"""Curated 3GPP clause documents -> the working-group classification benchmark: a spec-disjoint test
split (generic multiple-choice JSONL), a train split (SFT JSONL) and a sidecar of counts per class
(docs/wg_classification.md)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.wg_benchmark import WGBenchmarkConfig, run_build_wg_benchmark

CONFIG = WGBenchmarkConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_build_wg_benchmark, argv, prog="tools/build_wg_benchmark.py",
                           description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
