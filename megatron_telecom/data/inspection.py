"""Human-readable summaries of an indexed dataset: counts, length histogram, decoded samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from megatron_telecom.arguments import positional
from megatron_telecom.data.indexed import IndexedDatasetIndex, read_document, read_index
from megatron_telecom.data.tokenizers import Tokenizer, TokenizerConfig, build_tokenizer


@dataclass(kw_only=True)
class InspectDataConfig:
    """Flags of `tools/inspect_data.py`."""

    prefix: str = positional()
    """Dataset path without .bin/.idx."""
    samples: int = 1
    """Documents to decode."""
    sample_tokens: int = 400
    """Tokens decoded per sample."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


def length_histogram(lengths: np.ndarray, bins: int = 10, width: int = 40) -> list[str]:
    """Text histogram of document lengths on log2-spaced bins."""
    if len(lengths) == 0:
        return ["(no documents)"]
    low, top = max(int(lengths.min()), 1), max(int(lengths.max()), 1)
    edges = np.unique(np.geomspace(low, top + 1, num=bins + 1).astype(np.int64))
    counts, edges = np.histogram(lengths, bins=edges)
    peak = max(int(counts.max()), 1)
    return [
        f"{lo:>10,} - {hi - 1:>10,} | {'#' * round(width * c / peak):<{width}} {c:,}"
        for lo, hi, c in zip(edges[:-1], edges[1:], counts)
    ]


def tokenizer_from_provenance(prefix: str | Path) -> Tokenizer | None:
    """The tokenizer recorded in the dataset's provenance sidecar, if it is still on disk."""
    sidecar = Path(f"{prefix}.json")
    if not sidecar.is_file():
        return None
    info = json.loads(sidecar.read_text(encoding="utf-8")).get("tokenizer") or {}
    if info.get("tokenizer_type") == "NullTokenizer":
        return build_tokenizer("NullTokenizer", vocab_size=info["vocab_size"] - 1)
    if not info.get("tokenizer_model") or not Path(info["tokenizer_model"]).exists():
        return None
    return build_tokenizer(info["tokenizer_type"], info["tokenizer_model"])


def describe_dataset(prefix: str | Path, tokenizer: Tokenizer | None, samples: int = 1,
                     sample_tokens: int = 400) -> str:
    """Documents, sequences, tokens, length statistics and histogram, and decoded sample documents."""
    index: IndexedDatasetIndex = read_index(prefix)
    lengths = index.document_lengths()
    lines = [
        f"dataset    {prefix}",
        f"dtype      {np.dtype(index.dtype).name}",
        f"documents  {index.num_documents:,}",
        f"sequences  {len(index.sequence_lengths):,}",
        f"tokens     {index.num_tokens:,}",
    ]
    if len(lengths):
        lines.append(
            f"doc length min {lengths.min():,} / median {int(np.median(lengths)):,} / "
            f"mean {lengths.mean():,.1f} / max {lengths.max():,} tokens"
        )
    lines += ["", "document length histogram (tokens):", *length_histogram(lengths)]
    if tokenizer is None:
        lines += ["", "(no tokenizer: pass --tokenizer-type/--tokenizer-model to decode samples)"]
        return "\n".join(lines)
    rng = np.random.default_rng(0)
    picks = sorted(rng.choice(index.num_documents, size=min(samples, index.num_documents), replace=False))
    for doc in picks:
        ids = read_document(prefix, index, int(doc))
        text = tokenizer.detokenize(ids.tolist()[:sample_tokens])
        lines += ["", f"--- document {doc} ({len(ids):,} tokens; first {min(len(ids), sample_tokens)} decoded) ---", text]
    return "\n".join(lines)


def run_inspect(config: InspectDataConfig) -> int:
    """`tools/inspect_data.py`: print the summary, decoding samples with the given tokenizer or,
    without --tokenizer-type, with the one named in the dataset's provenance .json."""
    tok = config.tokenizer
    if tok.tokenizer_type:
        tokenizer = build_tokenizer(tok.tokenizer_type, tok.tokenizer_model, vocab_size=tok.vocab_size)
    else:
        tokenizer = tokenizer_from_provenance(config.prefix)
    print(describe_dataset(config.prefix, tokenizer, samples=config.samples,
                           sample_tokens=config.sample_tokens))
    return 0
