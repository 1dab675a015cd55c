"""Command lines of ``tools/evaluate.py`` (perplexity, teleqna, merge, compare) and ``tools/generate.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from megatron_telecom.atomic import atomic_write_text
from megatron_telecom.evaluation.teleqna import DEFAULT_DATA


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="HF model folder, bundled:smollm2-135m, or a megatron checkpoint folder (any TP/PP)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                        help="default: float32 on CPU, bfloat16 on GPU")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    ppl = commands.add_parser("perplexity", help="held-out perplexity and bits per byte")
    _add_model_args(ppl)
    ppl.add_argument("--input", nargs="+", required=True,
                     help="JSONL files (--json-key), .txt files (one document each) or indexed dataset prefixes")
    ppl.add_argument("--json-key", default="text")
    ppl.add_argument("--seq-length", type=int, default=2048, help="tokens per window (default 2048)")
    ppl.add_argument("--stride", type=int, help="tokens a window moves by (default: --seq-length, disjoint)")
    ppl.add_argument("--tokens-per-batch", type=int, default=8192)
    ppl.add_argument("--output", required=True, help="results JSON (created, or updated for the same model)")

    qna = commands.add_parser("teleqna", help="TeleQnA multiple-choice accuracy")
    _add_model_args(qna)
    qna.add_argument("--data", default=str(DEFAULT_DATA), help=f"TeleQnA zip or JSON (default {DEFAULT_DATA})")
    qna.add_argument("--mode", choices=["options", "letter"], default="options")
    qna.add_argument("--shots", type=int, default=0)
    qna.add_argument("--limit", type=int, help="category-stratified sample of this many questions")
    qna.add_argument("--num-shards", type=int, default=1)
    qna.add_argument("--shard-index", type=int, default=0)
    qna.add_argument("--log-samples", help="JSONL of per-question log-likelihoods")
    qna.add_argument("--output", required=True, help="results JSON (created, or updated for the same model)")

    merge = commands.add_parser("merge", help="merge TeleQnA shard results into one results file")
    merge.add_argument("shards", nargs="+")
    merge.add_argument("--output", required=True)

    cmp = commands.add_parser("compare", help="side-by-side table and PNG of results files")
    cmp.add_argument("results", nargs="+")
    cmp.add_argument("--labels", nargs="+")
    cmp.add_argument("--output-dir", required=True)
    return parser


def run_perplexity(args: argparse.Namespace) -> None:
    """Perplexity and bits per byte per input, into the results file and a table."""
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.perplexity import perplexity, read_documents
    from megatron_telecom.evaluation.results import perplexity_table, update_results

    model = load_model(args.model, args.dtype)
    section = {}
    for name in args.input:
        docs = read_documents(name, model.tokenizer, args.json_key)
        section[name] = perplexity(model, docs, args.seq_length, args.stride, args.tokens_per_batch, desc=name)
    update_results(args.output, args.model, "perplexity", section)
    print(perplexity_table(section))


def run_teleqna(args: argparse.Namespace) -> None:
    """Score a TeleQnA sample, write results (and per-question samples), print the table."""
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.multiple_choice import TeleQnAConfig
    from megatron_telecom.evaluation.multiple_choice import run_teleqna as score
    from megatron_telecom.evaluation.results import teleqna_table, update_results
    from megatron_telecom.evaluation.teleqna import read_teleqna, stratified_sample

    config = TeleQnAConfig(mode=args.mode, shots=args.shots, limit=args.limit,
                           num_shards=args.num_shards, shard_index=args.shard_index)
    config.validate()
    data = read_teleqna(args.data)
    if data.malformed:
        print(f"teleqna: skipped malformed records {data.malformed} (e.g. {data.malformed_examples})",
              file=sys.stderr)
    sample = stratified_sample(data.questions, args.limit)
    model = load_model(args.model, args.dtype)
    result, records = score(model, data.questions, sample, config)
    result.update(data=str(args.data), malformed=data.malformed, malformed_examples=data.malformed_examples)
    if args.log_samples:
        atomic_write_text(args.log_samples, "".join(json.dumps(r) + "\n" for r in records))
    update_results(args.output, args.model, "teleqna", {config.name: result})
    print(teleqna_table(result))


def run_merge(args: argparse.Namespace) -> None:
    """Merge shard results (one results file per shard) into one results file."""
    from megatron_telecom.evaluation.multiple_choice import merge_shards
    from megatron_telecom.evaluation.results import read_results, teleqna_table, update_results

    shards = [read_results(p) for p in args.shards]
    models = {s["model"] for s in shards}
    if len(models) != 1:
        raise ValueError(f"shards come from different models {sorted(models)}")
    names = sorted({n for s in shards for n in s.get("teleqna", {})})
    merged = {}
    for name in names:
        merged[name] = merge_shards([s["teleqna"][name] for s in shards if name in s.get("teleqna", {})])
        for key in ("data", "malformed", "malformed_examples"):
            merged[name][key] = shards[0]["teleqna"][name].get(key)
        print(f"{name}:\n{teleqna_table(merged[name])}")
    update_results(args.output, models.pop(), "teleqna", merged)


def run_compare(args: argparse.Namespace) -> None:
    """Print and write the side-by-side table and PNG."""
    from megatron_telecom.evaluation.compare import compare

    print(compare(args.results, args.labels, args.output_dir))
    print(f"wrote {Path(args.output_dir) / 'comparison.txt'} and {Path(args.output_dir) / 'comparison.png'}")


COMMANDS = {"perplexity": run_perplexity, "teleqna": run_teleqna, "merge": run_merge, "compare": run_compare}


def evaluate_main(argv: list[str] | None = None) -> int:
    """Entry point of tools/evaluate.py; user errors print one line and exit 2."""
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def generate_main(argv: list[str] | None = None) -> int:
    """Entry point of tools/generate.py."""
    from megatron_telecom.evaluation.generation import generate
    from megatron_telecom.evaluation.model_source import load_model

    parser = argparse.ArgumentParser(prog="generate.py", description="complete a prompt, streamed")
    _add_model_args(parser)
    parser.add_argument("prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, args.dtype)
        sys.stdout.write(args.prompt)
        generate(model, args.prompt, args.max_new_tokens, args.temperature, args.top_p, args.seed, sys.stdout)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
