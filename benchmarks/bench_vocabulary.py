#!/usr/bin/env python
"""Tokens per byte before and after vocabulary extension, on held-out telecom text and general text.

Mines the training side of the inputs (documents `tools/split_heldout.py` would hold out at
`--heldout-fraction` by `--id-key` are never read), extends the tokenizer with N new ids for each
`--num-tokens`, then tokenises the held-out documents of each source and the general corpus
(Python's documentation topics, never mined) with the base and each extended tokenizer. Prints a
Markdown table: tokens per byte, the change against the base, and how many new ids the held-out text
uses. Mined lists and tokenizers are written under `--output` (reused when already there).

    python benchmarks/bench_vocabulary.py --input /work/corpus/rfc_curated/00000.jsonl \\
        /work/corpus/3gpp/curated/00000.jsonl --id-key doc_id --output /work/vocab
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict
from pathlib import Path

from megatron_telecom.data.general_corpus import python_docs_documents
from megatron_telecom.data.heldout import document_id, is_heldout
from megatron_telecom.data.tokenizers import TokenizerConfig, build_tokenizer
from megatron_telecom.data.vocab_extension import SIDECAR, ExtendTokenizerConfig, extend_tokenizer
from megatron_telecom.data.vocab_mining import (
    CANDIDATES_JSON,
    MineVocabularyConfig,
    mine_vocabulary,
)
from megatron_telecom.jsonl import read_jsonl


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(args: argparse.Namespace, tokenizer: TokenizerConfig) -> dict[int, Path]:
    """Mine once and extend per N under --output (kept when already there)."""
    mined = args.output / f"{args.name}_candidates"
    if not (mined / CANDIDATES_JSON).is_file():
        start, cpu = time.perf_counter(), cpu_seconds()
        mine_vocabulary(MineVocabularyConfig(input=args.input, output_dir=str(mined), tokenizer=tokenizer,
                                             heldout_fraction=args.heldout_fraction, id_key=args.id_key))
        print(f"mined in {time.perf_counter() - start:.0f} s wall, {cpu_seconds() - cpu:.0f} CPU-s -> {mined}")
    folders = {}
    for n in args.num_tokens:
        folder = args.output / f"{args.name}_N{n}"
        if not (folder / SIDECAR).is_file():
            extend_tokenizer(ExtendTokenizerConfig(candidates=str(mined), num_tokens=n, output=str(folder),
                                                   tokenizer=tokenizer))
        folders[n] = folder
    return folders


def heldout_texts(args: argparse.Namespace) -> dict[str, list[str]]:
    """Held-out documents per source (the record's `source`, else the file name), and the general corpus."""
    texts: dict[str, list[str]] = defaultdict(list)
    for path in args.input:
        for record in read_jsonl(path):
            if is_heldout(document_id(record, args.id_key), args.heldout_fraction):
                texts[f"{record.get('source') or Path(path).stem} (held out)"].append(record["text"])
    texts["general: Python docs (never mined)"] = [r["text"] for r in python_docs_documents()]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", nargs="+", required=True, help="curated JSONL files (mined: training side)")
    parser.add_argument("--output", type=Path, default=Path("/work/vocab"))
    parser.add_argument("--name", default="smollm2", help="prefix of the folders under --output")
    parser.add_argument("--tokenizer-model", default="bundled:smollm2-135m")
    parser.add_argument("--tokenizer-type", default="HuggingFaceTokenizer")
    parser.add_argument("--num-tokens", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--heldout-fraction", type=float, default=0.1)
    parser.add_argument("--id-key", default="id")
    args = parser.parse_args()
    config = TokenizerConfig(tokenizer_type=args.tokenizer_type, tokenizer_model=args.tokenizer_model)
    folders = build(args, config)
    base = build_tokenizer(config.tokenizer_type, config.tokenizer_model)
    tokenizers = {"base": base, **{f"N={n}": build_tokenizer(config.tokenizer_type, f) for n, f in folders.items()}}
    print(f"| text | documents | bytes | {' | '.join(f'{name} tokens/byte' for name in tokenizers)} | new ids used |")
    print("|---|---:|---:|" + "---:|" * (len(tokenizers) + 1))
    for source, texts in heldout_texts(args).items():
        size = sum(len(t.encode("utf-8")) for t in texts)
        ids = {name: tok.tokenize_batch(texts) for name, tok in tokenizers.items()}
        counts = {name: sum(map(len, doc_ids)) for name, doc_ids in ids.items()}
        cells = [f"{counts['base'] / size:.4f}"] + [
            f"{counts[name] / size:.4f} ({100 * (counts[name] / counts['base'] - 1):+.2f}%)" for name in folders_names(folders)]
        used = [len({i for doc in ids[name] for i in doc if i >= base.vocab_size}) for name in folders_names(folders)]
        unchanged = sum(a == b for a, b in zip(ids["base"], ids[folders_names(folders)[-1]]))
        print(f"| {source} | {len(texts):,} | {size:,} | {' | '.join(cells)} | "
              f"{', '.join(f'{u:,}' for u in used)} ({unchanged:,}/{len(texts):,} documents' ids unchanged at the largest N) |")


def folders_names(folders: dict[int, Path]) -> list[str]:
    return [f"N={n}" for n in folders]


if __name__ == "__main__":
    main()
