#!/usr/bin/env python3
"""JSONL -> Megatron indexed dataset (.bin/.idx), with Megatron-LM's flags and byte-identical output."""

from __future__ import annotations

import argparse
import sys

from megatron_telecom.data.preprocess import BadRecordError, PreprocessConfig, preprocess
from megatron_telecom.data.tokenizers import TOKENIZER_TYPES


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_argument_group("input data")
    group.add_argument("--input", nargs="+", required=True,
                       help="input file(s) or glob(s): .jsonl, .jsonl.gz, .json")
    group.add_argument("--json-keys", nargs="+", default=["text"],
                       help="keys to extract; one dataset per key")
    group.add_argument("--split-sentences", action="store_true", help="split documents into sentences")
    group.add_argument("--keep-newlines", action="store_true",
                       help="keep newlines between sentences when splitting")
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--tokenizer-type", required=True, choices=TOKENIZER_TYPES)
    group.add_argument("--tokenizer-model",
                       help="SentencePiece .model file, a folder with tokenizer.json, or bundled:mistral-v1")
    group.add_argument("--vocab-size", type=int, help="vocabulary size for NullTokenizer")
    group.add_argument("--append-eod", action="store_true", help="append the EOD token to each document")
    group.add_argument("--lang", default="english", help="punkt language for --split-sentences")
    group = parser.add_argument_group("output data")
    group.add_argument("--output-prefix", required=True, help="output path without suffix")
    group = parser.add_argument_group("runtime")
    group.add_argument("--workers", type=int, required=True, help="worker processes for tokenization")
    group.add_argument("--partitions", type=int, default=1,
                       help="accepted for Megatron-LM compatibility; output order is always input order")
    group.add_argument("--keep-sequential-samples", action="store_true",
                       help="accepted for Megatron-LM compatibility (always on)")
    group.add_argument("--log-interval", type=int, default=1000, help="documents between progress lines")
    group.add_argument("--strict", action="store_true",
                       help="stop at the first bad record (file:line) and write nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = get_args(argv)
    try:
        config = PreprocessConfig(
            input=args.input, output_prefix=args.output_prefix, tokenizer_type=args.tokenizer_type,
            tokenizer_model=args.tokenizer_model, vocab_size=args.vocab_size,
            json_keys=tuple(args.json_keys),
            split_sentences=args.split_sentences, keep_newlines=args.keep_newlines, lang=args.lang,
            append_eod=args.append_eod, workers=args.workers, partitions=args.partitions,
            log_interval=args.log_interval, strict=args.strict,
        )
        result = preprocess(config)
    except BadRecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mb = result.input_bytes / 1e6
    print(f"Done: {result.documents:,} documents, {mb:,.1f} MB in {result.seconds:.1f} s "
          f"({result.documents / result.seconds:,.0f} docs/s, {mb / result.seconds:,.2f} MB/s)")
    for key, prefix in result.datasets.items():
        print(f"  {prefix}.bin/.idx/.json: {result.tokens[key]:,} tokens")
    if result.skipped.total:
        print(f"Skipped {result.skipped.total:,} bad records:")
        for reason, count in sorted(result.skipped.counts.items()):
            print(f"  {reason}: {count:,} (e.g. {', '.join(result.skipped.examples[reason])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
