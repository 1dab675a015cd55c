#!/usr/bin/env python3
"""Print what an indexed dataset holds: documents, tokens, length histogram and decoded samples."""

from __future__ import annotations

import argparse
import sys

from megatron_telecom.data.inspection import describe_dataset, tokenizer_from_provenance
from megatron_telecom.data.tokenizers import TOKENIZER_TYPES, build_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prefix", help="dataset path without .bin/.idx")
    parser.add_argument("--tokenizer-type", choices=TOKENIZER_TYPES,
                        help="default: the tokenizer named in the dataset's provenance .json")
    parser.add_argument("--tokenizer-model")
    parser.add_argument("--samples", type=int, default=1, help="documents to decode")
    parser.add_argument("--sample-tokens", type=int, default=400, help="tokens decoded per sample")
    args = parser.parse_args(argv)
    try:
        if args.tokenizer_type:
            tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model)
        else:
            tokenizer = tokenizer_from_provenance(args.prefix)
        print(describe_dataset(args.prefix, tokenizer, samples=args.samples, sample_tokens=args.sample_tokens))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
