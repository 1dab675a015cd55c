#!/usr/bin/env python3
"""Merge several indexed datasets into one (Megatron-LM's tools/merge_datasets.py flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megatron_telecom.data.indexed import discover_datasets, merge_datasets, write_merge_provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="folder: every .bin/.idx pair in it is merged, sorted by name")
    source.add_argument("--datasets", nargs="+", help="dataset prefixes to merge, in this order")
    parser.add_argument("--output-prefix", required=True, help="output path without suffix")
    args = parser.parse_args(argv)
    try:
        prefixes = discover_datasets(Path(args.input)) if args.input else [Path(p) for p in args.datasets]
        writer = merge_datasets(prefixes, args.output_prefix)
        write_merge_provenance(prefixes, writer)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Merged {len(prefixes)} datasets into {args.output_prefix}: "
          f"{writer.num_documents:,} documents, {writer.num_tokens:,} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
