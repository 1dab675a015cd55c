#!/usr/bin/env python
"""Raw telecom documents (RFC .txt, 3GPP .docx/.zip, PDF, JSONL) -> clean, telecom-filtered,
deduplicated JSONL shards for tools/preprocess_data.py (see docs/curation.md)."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.curation.cli import run
from megatron_telecom.data.curation.config import CurationConfig

CONFIG = CurationConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run, argv, prog="tools/curate_corpus.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
