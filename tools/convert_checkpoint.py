#!/usr/bin/env python3
"""Checkpoint conversion: Hugging Face <-> Megatron (torch_dist), and a logits check of the two."""

from __future__ import annotations

import argparse
import sys


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    to_mcore = commands.add_parser("hf-to-mcore", help="HF folder -> megatron checkpoint")
    to_mcore.add_argument("--hf-path", required=True, help="HF model folder or bundled:smollm2-135m")
    to_mcore.add_argument("--save", required=True, help="new checkpoint folder")
    to_mcore.add_argument("--target-tensor-parallel-size", type=int, default=1,
                          help="TP the checkpoint will train at (vocabulary padding, checks)")
    to_mcore.add_argument("--target-pipeline-model-parallel-size", type=int, default=1,
                          help="PP the checkpoint will train at (checked to split the layers)")
    to_mcore.add_argument("--make-vocab-size-divisible-by", type=int, default=128)
    to_hf = commands.add_parser("mcore-to-hf", help="megatron checkpoint (any TP/PP) -> HF folder")
    to_hf.add_argument("--load", required=True, help="--save folder or one of its iter_* folders")
    to_hf.add_argument("--save", required=True, help="new HF folder")
    to_hf.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    to_hf.add_argument("--max-shard-size-mb", type=int, default=2048)
    verify = commands.add_parser("verify", help="HF vs megatron logits on the same tokens")
    verify.add_argument("--hf-path", required=True, help="HF model folder or bundled:NAME")
    verify.add_argument("--load", required=True, help="megatron checkpoint folder")
    verify.add_argument("--batch-size", type=int, default=2)
    verify.add_argument("--seq-length", type=int, default=128)
    verify.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed max |logit difference| (fp32)")
    verify.add_argument("--seed", type=int, default=1234)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = get_args(argv)
    try:
        if args.command == "hf-to-mcore":
            from megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore

            convert_hf_to_mcore(
                args.hf_path, args.save,
                target_tensor_parallel_size=args.target_tensor_parallel_size,
                target_pipeline_model_parallel_size=args.target_pipeline_model_parallel_size,
                make_vocab_size_divisible_by=args.make_vocab_size_divisible_by)
        elif args.command == "mcore-to-hf":
            from megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf

            export_mcore_to_hf(args.load, args.save, dtype=args.dtype,
                               max_shard_bytes=args.max_shard_size_mb * 1024**2)
        else:
            from megatron_telecom.convert.verify import verify

            report = verify(args.hf_path, args.load, batch_size=args.batch_size,
                            seq_length=args.seq_length, seed=args.seed)
            print(report.summary(), flush=True)
            if report.max_abs_diff > args.tolerance:
                print(f"FAILED: max |logit difference| {report.max_abs_diff:.3g} > "
                      f"--tolerance {args.tolerance:g}", file=sys.stderr)
                return 1
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
