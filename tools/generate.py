#!/usr/bin/env python3
"""Complete a prompt with a model (HF folder, bundled:NAME or megatron checkpoint), streamed."""

import sys

from megatron_telecom.evaluation.cli import generate_main

if __name__ == "__main__":
    sys.exit(generate_main())
