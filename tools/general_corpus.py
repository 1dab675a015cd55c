#!/usr/bin/env python3
"""Write the general (non-telecom) English corpus that ships with Python as JSONL (no download)."""

from __future__ import annotations

import argparse
import sys

from megatron_telecom.data.general_corpus import LICENSE, SOURCE, write_general_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="JSONL file to write")
    args = parser.parse_args(argv)
    try:
        count = write_general_corpus(args.output)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"general corpus: {count} documents from {SOURCE} (licence {LICENSE}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
