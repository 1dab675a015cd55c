#!/usr/bin/env python3
"""Split JSONL documents into train.jsonl and heldout.jsonl by a hash of each document's id."""

from __future__ import annotations

import argparse
import sys

from megatron_telecom.data.heldout import DEFAULT_SEED, split_heldout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", nargs="+", required=True, help="JSONL(.gz) files or globs")
    parser.add_argument("--output-dir", required=True, help="gets train.jsonl, heldout.jsonl, split.json")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="expected share of documents held out (default 0.1)")
    parser.add_argument("--id-key", default="id",
                        help="key of the document id (default id; without it: the text's SHA-256)")
    parser.add_argument("--seed", default=DEFAULT_SEED, help="salt of the hash (changes the split)")
    parser.add_argument("--sample-chars", type=int,
                        help="also write heldout_sample.jsonl: each held-out document's first "
                             "paragraphs up to this many characters (cheaper evaluation)")
    args = parser.parse_args(argv)
    try:
        report = split_heldout(args.input, args.output_dir, heldout_fraction=args.heldout_fraction,
                               id_key=args.id_key, seed=args.seed, sample_chars=args.sample_chars)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for side in ("train", "heldout"):
        print(f"{side:<8} {report.documents[side]:>7,} documents {report.characters[side]:>13,} characters"
              f" -> {args.output_dir}/{side}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
