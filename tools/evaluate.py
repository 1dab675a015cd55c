#!/usr/bin/env python3
"""Evaluate a model: perplexity / bits per byte, TeleQnA, shard merge, side-by-side compare."""

import sys

from megatron_telecom.evaluation.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
