#!/usr/bin/env python3
"""Checkpoint conversion: Hugging Face <-> Megatron (torch_dist), and a logits check of the two."""

from __future__ import annotations

import sys

from megatron_telecom.convert.cli import COMMANDS, main

CONFIG = COMMANDS

if __name__ == "__main__":
    sys.exit(main())
