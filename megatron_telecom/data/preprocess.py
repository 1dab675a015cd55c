"""JSONL -> Megatron indexed datasets, byte-identical to Megatron-LM 0.16.1's preprocess_data.py.

Why it is faster than Megatron-LM's tool with the same `--workers`: workers receive batches of raw
lines (not one line per task), encode them with the tokenizer library's batch call and send back
numpy token buffers (not pickled Python int lists), and the parent only writes bytes. The number
of batches in flight is bounded, so memory does not grow with the input size.

Decisions where Megatron-LM is silent or buggy (documented in the README too):
- Documents are written in input order; input files (globs allowed) are read in sorted order.
  `--partitions` and `--keep-sequential-samples` are accepted for compatibility; the order is
  always that of Megatron-LM's `--keep-sequential-samples` and `--workers` sets the parallelism.
- A bad record (invalid JSON or UTF-8, missing key, non-string value, empty text) is skipped and
  counted by reason (Megatron-LM crashes, or writes an empty document for empty text); in every
  `--json-keys` dataset, so the datasets stay aligned document by document. `--strict` stops at the
  first bad record and leaves no output. Blank lines are not records and are ignored.
- Every `--json-keys` dataset is finalized (Megatron-LM 0.16.1 finalizes only the last one).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from megatron_telecom.arguments import flat_values
from megatron_telecom.atomic import atomic_write_json
from megatron_telecom.data.indexed import IndexedDatasetWriter, optimal_dtype
from megatron_telecom.data.jsonl_input import Batch, InputFile, read_batches, resolve_inputs
from megatron_telecom.data.tokenizers import (
    Tokenizer,
    TokenizerConfig,
    build_tokenizer,
    tokenizer_identity,
)
from megatron_telecom.jsonl import fast_loads
from megatron_telecom.version import __version__

SKIP_REASONS = ("invalid_utf8", "invalid_json", "not_an_object", "missing_key", "non_string", "empty_text")
_EXAMPLES_PER_REASON = 5


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """Flags of `tools/preprocess_data.py` (Megatron-LM names and meanings)."""

    input: list[str]
    """Input files or globs: .jsonl, .jsonl.gz, .json (JSON lines, or one JSON array of records)."""
    json_keys: tuple[str, ...] = ("text",)
    """Keys to extract; one dataset per key."""
    split_sentences: bool = False
    """Split documents into sentences."""
    keep_newlines: bool = False
    """Keep newlines between sentences when splitting."""
    append_eod: bool = False
    """Append the EOD token to each document."""
    lang: str = "english"
    """Punkt language for --split-sentences."""
    output_prefix: str
    """Datasets are written to {output_prefix}_{key}_{document|sentence}.bin/.idx/.json."""
    workers: int
    """Worker processes for tokenization."""
    partitions: int = 1
    """Accepted for Megatron-LM compatibility; output order is always input order."""
    keep_sequential_samples: bool = False
    """Accepted for Megatron-LM compatibility (always on)."""
    log_interval: int = 1000
    """Documents between progress lines."""
    strict: bool = False
    """Stop at the first bad record (file:line) and write nothing."""
    batch_bytes: int = 1 << 20
    """Raw input bytes per task sent to a worker (at most 2 x --workers tasks are in flight)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def __post_init__(self) -> None:
        if self.tokenizer.tokenizer_type is None:
            raise ValueError("--tokenizer-type is required (and --tokenizer-model, or --vocab-size "
                             "for NullTokenizer)")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.partitions < 1:
            raise ValueError(f"--partitions must be >= 1, got {self.partitions}")
        if self.batch_bytes < 1:
            raise ValueError(f"--batch-bytes must be >= 1, got {self.batch_bytes}")
        if not self.json_keys:
            raise ValueError("--json-keys needs at least one key")
        if self.keep_newlines and not self.split_sentences:
            raise ValueError("--keep-newlines only applies with --split-sentences")

    @property
    def level(self) -> str:
        return "sentence" if self.split_sentences else "document"

    def dataset_prefix(self, key: str) -> str:
        return f"{self.output_prefix}_{key}_{self.level}"


class BadRecordError(ValueError):
    """A bad input record under `--strict` (names file, line and reason)."""


@dataclass
class SkippedRecords:
    """Records skipped, by reason, with the first few locations of each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < _EXAMPLES_PER_REASON:
            shown.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# ---------------------------------------------------------------------------------------------
# Encoding (runs in worker processes).


@dataclass
class EncodedKey:
    """Tokens of one json key for the documents of a batch."""

    tokens: np.ndarray
    sequence_lengths: np.ndarray
    sequences_per_document: np.ndarray


@dataclass
class EncodedBatch:
    file_index: int
    num_documents: int
    num_bytes: int
    keys: dict[str, EncodedKey]
    skipped: list[tuple[int, str, str]]  # (line number, reason, detail)


class Encoder:
    """Turns raw JSON lines into token arrays per key; built once per worker process."""

    def __init__(self, config: PreprocessConfig, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        tok = config.tokenizer
        self.tokenizer = tokenizer or build_tokenizer(tok.tokenizer_type, tok.tokenizer_model, vocab_size=tok.vocab_size)
        self.dtype = optimal_dtype(self.tokenizer.vocab_size)
        self.splitter = None
        if config.split_sentences:  # nltk is imported only when needed
            from megatron_telecom.data.sentence_splitter import SentenceSplitter

            self.splitter = SentenceSplitter(lang=config.lang, keep_newlines=config.keep_newlines)

    def parse(self, line: bytes) -> tuple[dict[str, list[str]] | None, str, str]:
        """Texts per key of one line, or (None, reason, detail) for a bad record."""
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, "invalid_utf8", f"invalid UTF-8 at byte {exc.start}"
        try:
            record = fast_loads(line)
        except ValueError:
            try:
                record = json.loads(line)
            except ValueError as exc:
                return None, "invalid_json", str(exc)
        if not isinstance(record, dict):
            return None, "not_an_object", f"a JSON {type(record).__name__}, not an object"
        texts: dict[str, list[str]] = {}
        for key in self.config.json_keys:
            if key not in record:
                return None, "missing_key", f"no key {key!r} (keys: {sorted(record)[:8]})"
            value = record[key]
            if isinstance(value, str):
                texts[key] = self.splitter.split(value) if self.splitter else [value]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                texts[key] = value  # already split into sentences, as Megatron-LM accepts
            else:
                return None, "non_string", f"{key!r} is a {type(value).__name__}, not a string"
        return texts, "", ""

    def encode_batch(self, batch: Batch) -> EncodedBatch:
        records: list[tuple[int, dict[str, list[str]]]] = []
        skipped: list[tuple[int, str, str]] = []
        for number, line in zip(batch.line_numbers, batch.lines):
            texts, reason, detail = self.parse(line)
            if texts is None:
                skipped.append((number, reason, detail))
            else:
                records.append((number, texts))
        encoded = {key: self._tokenize_key(records, key) for key in self.config.json_keys}
        empty = np.zeros(len(records), dtype=bool)
        for per_doc in encoded.values():
            empty |= np.array([not doc for doc in per_doc], dtype=bool)
        for (number, _), is_empty in zip(records, empty):
            if is_empty:
                skipped.append((number, "empty_text", "no tokens after tokenization"))
        skipped.sort()
        keys = {key: self._pack(per_doc, empty) for key, per_doc in encoded.items()}
        num_bytes = sum(len(line) for line in batch.lines)
        return EncodedBatch(batch.file_index, int((~empty).sum()), num_bytes, keys, skipped)

    def _tokenize_key(self, records: list[tuple[int, dict[str, list[str]]]], key: str) -> list[list[bytes]]:
        """Per document, the token ids (raw bytes of the token dtype) of each non-empty sentence
        (one 'sentence' in document mode)."""
        sentences = [s for _, texts in records for s in texts[key]]
        ids = iter(self.tokenizer.tokenize_batch_bytes(sentences))
        return [[seq for seq in (next(ids) for _ in texts[key]) if seq] for _, texts in records]

    def _pack(self, per_doc: list[list[bytes]], empty: np.ndarray) -> EncodedKey:
        """One token array for the batch's documents (one copy: a `bytes.join`), with each
        sequence's length and the sequences per document."""
        docs = [doc for doc, is_empty in zip(per_doc, empty) if not is_empty]
        itemsize = np.dtype(self.dtype).itemsize
        pieces = [seq for doc in docs for seq in doc]
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)) // itemsize
        per_doc_counts = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        parts = pieces
        if self.config.append_eod:  # the EOD id ends each document's last sequence
            eod = np.array([self.tokenizer.eod], dtype=self.dtype).tobytes()
            lengths[np.cumsum(per_doc_counts) - 1] += 1
            parts = [part for doc in docs for part in (*doc, eod)]
        tokens = np.frombuffer(b"".join(parts), dtype=self.dtype)
        return EncodedKey(tokens, lengths.astype(np.int32), per_doc_counts)


_worker_encoder: Encoder | None = None


def _init_worker(config: PreprocessConfig, encoder: Encoder | None) -> None:
    """A worker's encoder: the parent's own, inherited by fork, or built anew under spawn."""
    global _worker_encoder
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _worker_encoder = encoder or Encoder(config)


def _encode_in_worker(batch: Batch) -> EncodedBatch:
    assert _worker_encoder is not None
    return _worker_encoder.encode_batch(batch)


def encode_batches(config: PreprocessConfig, batches: Iterator[Batch], encoder: Encoder) -> Iterator[EncodedBatch]:
    """Encoded batches in input order; with workers > 1 at most 2 x workers batches in flight.

    Workers are forked where the platform can (Linux): they inherit the parent's loaded tokenizer
    and imports instead of paying for them again (seconds per worker for a Hugging Face tokenizer).
    A worker that dies (e.g. killed for memory) raises BrokenProcessPool instead of hanging.
    """
    if config.workers == 1:
        yield from map(encoder.encode_batch, batches)
        return
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    with ProcessPoolExecutor(config.workers, mp_context=context, initializer=_init_worker,
                             initargs=(config, encoder if fork else None)) as pool:
        pending: deque[Future] = deque()
        try:
            for batch in batches:
                pending.append(pool.submit(_encode_in_worker, batch))
                if len(pending) >= 2 * config.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as exc:
            raise RuntimeError("a tokenizer worker died (out of memory? see dmesg); nothing was written") from exc
        finally:
            for future in pending:
                future.cancel()


# ---------------------------------------------------------------------------------------------
# Progress, provenance and the driver.


@dataclass
class Progress:
    """Counts for progress lines: documents, tokens, bytes, rate and ETA."""

    total_bytes: int
    log_interval: int
    start: float = field(default_factory=time.monotonic)
    documents: int = 0
    tokens: int = 0
    raw_bytes: int = 0
    done_bytes: int = 0
    position: int = 0
    _last_logged_docs: int = 0
    _last_logged_time: float = field(default_factory=time.monotonic)

    def update(self, documents: int, tokens: int, raw_bytes: int) -> None:
        self.documents += documents
        self.tokens += tokens
        self.raw_bytes += raw_bytes
        now = time.monotonic()
        if self.documents - self._last_logged_docs >= self.log_interval or now - self._last_logged_time >= 30:
            self._last_logged_docs, self._last_logged_time = self.documents, now
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        fraction = min(self.position / self.total_bytes, 1.0) if self.total_bytes else 1.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        return (
            f"Processed {self.documents:,} documents, {self.tokens:,} tokens "
            f"({self.documents / elapsed:,.0f} docs/s, {self.tokens / elapsed:,.0f} tokens/s, "
            f"{self.raw_bytes / elapsed / 1e6:,.2f} MB/s) | {100 * fraction:.1f}% | ETA {eta:,.0f} s"
        )


@dataclass(frozen=True)
class PreprocessResult:
    datasets: dict[str, str]  # key -> dataset prefix
    documents: int
    tokens: dict[str, int]
    skipped: SkippedRecords
    seconds: float
    input_bytes: int


def _provenance(config: PreprocessConfig, key: str, writer: IndexedDatasetWriter, inputs: list[InputFile],
                tokenizer: Tokenizer, skipped: SkippedRecords) -> dict:
    flags = {name: value for name, value in flat_values(config).items()
             if name not in ("input", "output_prefix", "batch_bytes", "keep_sequential_samples")}
    return {
        "tool": "megatron-telecom tools/preprocess_data.py",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": {
            "prefix": str(Path(config.dataset_prefix(key)).resolve()),
            "json_key": key,
            "level": config.level,
            "dtype": np.dtype(writer.dtype).name,
            "documents": writer.num_documents,
            "tokens": writer.num_tokens,
        },
        "inputs": [{"path": str(i.path.resolve()), "bytes": i.size, "sha256": i.sha256} for i in inputs],
        "tokenizer": asdict(tokenizer_identity(tokenizer)),
        "flags": flags,
        "skipped": {"total": skipped.total, "by_reason": skipped.counts, "examples": skipped.examples},
    }


def _consume(config: PreprocessConfig, inputs: list[InputFile], encoded: Iterator[EncodedBatch],
             writers: dict[str, IndexedDatasetWriter], progress: Progress) -> SkippedRecords:
    skipped = SkippedRecords()
    for batch in encoded:
        path = inputs[batch.file_index].path
        for number, reason, detail in batch.skipped:
            if config.strict:
                raise BadRecordError(f"{path}:{number}: {reason}: {detail} (--strict: nothing was written)")
            skipped.add(reason, f"{path}:{number}")
        for key, part in batch.keys.items():
            writers[key].add_documents(part.tokens, part.sequence_lengths, part.sequences_per_document)
        first = batch.keys[config.json_keys[0]]
        progress.update(batch.num_documents, len(first.tokens), batch.num_bytes)
    return skipped


def preprocess(config: PreprocessConfig) -> PreprocessResult:
    """Run the whole conversion; on any error (or Ctrl-C) no output file is left behind."""
    inputs = resolve_inputs(config.input)
    encoder = Encoder(config)
    if encoder.tokenizer.fast_path_note:
        print(f"note: {encoder.tokenizer.fast_path_note}", file=sys.stderr, flush=True)
    dtype = encoder.dtype
    progress = Progress(total_bytes=sum(i.size for i in inputs), log_interval=config.log_interval)
    writers = {key: IndexedDatasetWriter(config.dataset_prefix(key), dtype) for key in config.json_keys}
    try:
        batches = read_batches(inputs, config.batch_bytes, progress)
        skipped = _consume(config, inputs, encode_batches(config, batches, encoder), writers, progress)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    try:  # every key's files complete under temporary names before any is published
        for writer in writers.values():
            writer.write_index()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for key, writer in writers.items():
        writer.publish()
        payload = _provenance(config, key, writer, inputs, encoder.tokenizer, skipped)
        atomic_write_json(Path(config.dataset_prefix(key) + ".json"), payload)
    return PreprocessResult(
        datasets={key: config.dataset_prefix(key) for key in config.json_keys},
        documents=progress.documents,
        tokens={key: w.num_tokens for key, w in writers.items()},
        skipped=skipped,
        seconds=time.monotonic() - progress.start,
        input_bytes=progress.raw_bytes,
    )


def run_or_refuse(make_summary: Callable[[], str]) -> int:
    """A preprocessing CLI's body: print ``make_summary()``; a --strict bad record is one ``error:`` line, exit code 1."""
    try:
        print(make_summary())
    except BadRecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_preprocess(config: PreprocessConfig) -> int:
    """`tools/preprocess_data.py`: convert, print the summary; exit code 1 for a --strict bad record."""
    return run_or_refuse(lambda: summary(preprocess(config)))


def summary(result: PreprocessResult) -> str:
    """What ``tools/preprocess_data.py`` prints: speed, tokens per dataset, bad records by reason."""
    mb = result.input_bytes / 1e6
    lines = [f"Done: {result.documents:,} documents, {mb:,.1f} MB in {result.seconds:.1f} s "
             f"({result.documents / result.seconds:,.0f} docs/s, {mb / result.seconds:,.2f} MB/s)"]
    lines += [f"  {prefix}.bin/.idx/.json: {result.tokens[key]:,} tokens" for key, prefix in result.datasets.items()]
    if result.skipped.total:
        lines.append(f"Skipped {result.skipped.total:,} bad records:")
        lines += [f"  {reason}: {count:,} (e.g. {', '.join(result.skipped.examples[reason])})"
                  for reason, count in sorted(result.skipped.counts.items())]
    return "\n".join(lines)
