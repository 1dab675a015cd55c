#!/usr/bin/env python
"""Curate raw telecom documents into clean, filtered, deduplicated JSONL (see docs/curation.md)."""

import sys

from megatron_telecom.data.curation.cli import main

if __name__ == "__main__":
    sys.exit(main())
