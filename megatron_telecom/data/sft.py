"""Chat / prompt-completion JSONL -> packed SFT sequences: tokens + loss mask, document boundaries kept.

Input rows (TRL's and Megatron-LM's formats), one JSON object per line:
- ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``: rendered with the
  tokenizer's chat template; the loss mask covers every assistant turn (its answer and end-of-turn
  tokens, not the ``<|im_start|>assistant`` header), built by rendering prefixes
  (`megatron_telecom.data.chat_template`), so templates without ``{% generation %}`` tags work;
- ``{"prompt": [...messages], "completion": [...messages]}``: rendered likewise, the mask covers
  the completion (TRL's ``completion_mask``);
- ``{"prompt": "text", "completion": "text"}``: TRL's plain-text form: no template, EOS appended
  to the completion, mask on the completion.

Output, for ``--output-prefix P`` (Megatron's .bin/.idx format, readable by megatron-core's
``IndexedDataset``):
- ``P_tokens.bin/.idx``: one *document* per packed sequence (at most ``--seq-length`` tokens),
  one *sequence* inside it per conversation, so ``sequence_lengths`` of a document are its
  document boundaries (``cu_seqlens`` = their cumulative sum);
- ``P_loss_mask.bin/.idx``: uint8 0/1, the same layout token for token (1 = the token is a
  trained label);
- ``P.json``: provenance: inputs and their SHA-256, tokenizer, chat template and its hash,
  refusals by reason, packing algorithm, efficiency and truncation policy.
A trainer shifts labels inside each conversation: the last token of one conversation never
predicts the first of the next (see `data/packed_sft.py`, the reader).

Truncation policy: none. A conversation longer than ``--seq-length`` tokens is refused and
counted (``too_long``): cutting it would train on an answer without its end, or on a prompt
without its answer. Raise ``--seq-length`` or split the conversation upstream.

Refusal reasons (counted, with the first file:line of each; ``--strict`` stops at the first
with one ``error:`` line and writes nothing): see ``REFUSAL_REASONS``. Conversations are
held in memory until packing (tokens as 2-4 bytes each). ``--workers N`` renders and tokenizes
in N processes; the output is the same bytes as with one.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from megatron_telecom.arguments import flat_values
from megatron_telecom.atomic import atomic_write_json
from megatron_telecom.data.chat_template import ChatRenderer, Message, Refused, Tokenized
from megatron_telecom.data.indexed import (
    IndexedDatasetWriter,
    bin_path,
    idx_path,
    optimal_dtype,
)
from megatron_telecom.data.jsonl_input import Batch, InputFile, read_batches, resolve_inputs
from megatron_telecom.data.packing import PackingAlgorithm, PackingStats, pack
from megatron_telecom.data.preprocess import BadRecordError, Progress, SkippedRecords, run_or_refuse
from megatron_telecom.data.tokenizers import (
    HUGGINGFACE_TYPES,
    TokenizerConfig,
    build_tokenizer,
    tokenizer_identity,
)
from megatron_telecom.version import __version__

ROLES = ("system", "user", "assistant")
REFUSAL_REASONS = {
    "invalid_utf8": "the line is not UTF-8",
    "invalid_json": "the line is not JSON",
    "not_an_object": "the line is JSON but not an object",
    "bad_format": "neither messages nor prompt/completion, or a message without string role/content",
    "unknown_role": f"a role other than {', '.join(ROLES)}",
    "empty_content": "a message, prompt or completion that is empty or only whitespace",
    "template_error": "the chat template raised an error on the conversation",
    "assistant_first": "an assistant turn with no message before it (nothing it answers)",
    "prefix_broken": "the template renders the first turns differently once later turns follow",
    "no_assistant_tokens": "no token is trained on (no assistant turn, or it rendered empty)",
    "mask_all_ones": "every token is trained on: the mask cannot tell prompt from answer",
    "too_long": "more tokens than --seq-length (never truncated)",
}
_BATCH_BYTES = 1 << 16  # raw input per task: small, so that --workers share even small files
TRUNCATION_POLICY = "none: conversations longer than --seq-length are refused (too_long), never cut"


@dataclass(frozen=True, kw_only=True)
class ChatPreprocessConfig:
    """Flags shared by `tools/preprocess_sft.py` and `tools/preprocess_dpo.py` (Megatron-LM's names
    where it has the concept): rows rendered through a Hugging Face tokenizer's chat template."""

    input: list[str]
    """Input JSONL files or globs."""
    output_prefix: str
    """Writes {output_prefix}_tokens and {output_prefix}_loss_mask (.bin/.idx) and {output_prefix}.json."""
    seq_length: int
    """Tokens per sequence; longer rows are refused, never truncated."""
    chat_template: str | None = None
    """A .jinja file used instead of the tokenizer's own chat template."""
    strict: bool = False
    """Stop at the first refused row (file:line and reason) and write nothing."""
    workers: int = 1
    """Processes that render and tokenize (1: this process; each worker loads the tokenizer)."""
    log_interval: int = 1000
    """Rows between progress lines."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def __post_init__(self) -> None:
        if self.tokenizer.tokenizer_type not in HUGGINGFACE_TYPES:
            raise ValueError("--tokenizer-type HuggingFaceTokenizer is required: chat templates live in "
                             "Hugging Face tokenizer folders (give --tokenizer-model FOLDER or bundled:NAME)")
        for flag, value, least in (("--seq-length", self.seq_length, 2), ("--workers", self.workers, 1)):
            if value < least:
                raise ValueError(f"{flag} must be >= {least}, got {value}")


@dataclass(frozen=True, kw_only=True)
class SFTPreprocessConfig(ChatPreprocessConfig):
    """Flags of `tools/preprocess_sft.py`."""

    input: list[str]
    """Input JSONL files or globs: chat rows {"messages": [...]} and/or prompt/completion rows."""
    seq_length: int
    """Tokens per packed sequence; longer conversations are refused, never truncated."""
    packing: PackingAlgorithm = "bfd"
    """bfd: best-fit decreasing into --seq-length bins; none: one conversation per sequence."""


def validated_messages(value: Any, what: str) -> list[Message]:
    """Validated messages: a non-empty list of objects with a known role and non-empty content."""
    if not isinstance(value, list) or not value:
        raise Refused("bad_format", f"{what} is not a non-empty list of messages")
    for i, message in enumerate(value):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise Refused("bad_format", f"{what}[{i}] is not an object with string role and content")
        if message["role"] not in ROLES:
            raise Refused("unknown_role", f"{what}[{i}] has role {message['role']!r} (known: {', '.join(ROLES)})")
        if not message["content"].strip():
            raise Refused("empty_content", f"{what}[{i}] ({message['role']}) has empty content")
    return value


def parse_record(line: bytes) -> dict:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise Refused("invalid_json", str(exc)) from exc
    if not isinstance(record, dict):
        raise Refused("not_an_object", f"a JSON {type(record).__name__}, not an object")
    return record


def tokenize_row(renderer: ChatRenderer, line: bytes, seq_length: int) -> Tokenized:
    """One input line -> tokens and loss mask, or `Refused` with the reason."""
    record = parse_record(line)
    if "messages" in record:
        messages = validated_messages(record["messages"], "messages")
        regions = [(i, i + 1) for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not regions:
            raise Refused("no_assistant_tokens", "no assistant message")
        result = renderer.conversation(messages, regions)
    elif "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            if not prompt.strip() or not completion.strip():
                raise Refused("empty_content", "empty prompt or completion")
            result = renderer.text_completion(prompt, completion)
        else:
            prompt, completion = validated_messages(prompt, "prompt"), validated_messages(completion, "completion")
            result = renderer.conversation(prompt + completion, [(len(prompt), len(prompt) + len(completion))])
    else:
        raise Refused("bad_format", f"no 'messages' and no 'prompt'+'completion' (keys: {sorted(record)[:8]})")
    trained = int(result.loss_mask.sum())
    if trained == 0:
        raise Refused("no_assistant_tokens", "the assistant turns rendered no tokens")
    if result.loss_mask[1:].all():  # the first token is never a label
        raise Refused("mask_all_ones", f"all {len(result.tokens)} tokens would be trained on")
    if len(result.tokens) > seq_length:
        raise Refused("too_long", f"{len(result.tokens)} tokens > --seq-length {seq_length}")
    return result


@dataclass
class Conversations:
    """Accepted conversations in input order (tokens, masks) and the refused ones by reason."""

    tokens: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    refused: SkippedRecords = field(default_factory=SkippedRecords)


Row = Tokenized | tuple[Tokenized, ...]
"""One accepted input row: a conversation, or several sequences kept together (a preference pair)."""
RowTokenizer = Callable[[ChatRenderer, bytes, int], Row]
"""(renderer, input line, --seq-length) -> the row, or `Refused`: `tokenize_row` for SFT."""


def tokenize_rows(renderer: ChatRenderer, lines: list[bytes], seq_length: int,
                  row: RowTokenizer = tokenize_row) -> list[Row | Refused]:
    """``row`` for each line, refusals returned in place (what a worker sends back)."""
    out: list[Row | Refused] = []
    for line in lines:
        try:
            out.append(row(renderer, line, seq_length))
        except Refused as refusal:
            out.append(refusal)
    return out


_worker: tuple[ChatRenderer, int, RowTokenizer] | None = None


def _init_worker(folder: Path, chat_template: str | None, seq_length: int, row: RowTokenizer) -> None:
    global _worker
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _worker = (ChatRenderer(folder, chat_template), seq_length, row)


def _tokenize_in_worker(lines: list[bytes]) -> list[Row | Refused]:
    assert _worker is not None
    return tokenize_rows(_worker[0], lines, _worker[1], _worker[2])


def tokenized_batches(config: ChatPreprocessConfig, renderer: ChatRenderer, batches: Iterator[Batch],
                      row: RowTokenizer = tokenize_row) -> Iterator[tuple[Batch, list[Row | Refused]]]:
    """Each batch with its rows tokenized, in input order; --workers N spreads groups of 2N batches
    over N spawned processes (so at most 2N batches are in memory at once)."""
    if config.workers == 1:
        for batch in batches:
            yield batch, tokenize_rows(renderer, batch.lines, config.seq_length, row)
        return
    context = multiprocessing.get_context("spawn")
    initargs = (renderer.folder, config.chat_template, config.seq_length, row)
    with ProcessPoolExecutor(config.workers, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
        try:
            while group := list(itertools.islice(batches, 2 * config.workers)):
                yield from zip(group, pool.map(_tokenize_in_worker, [batch.lines for batch in group]))
        except BrokenProcessPool as exc:
            raise RuntimeError("a tokenizer worker died (out of memory? see dmesg); nothing was written") from exc


def _sequences(row: Row) -> tuple[Tokenized, ...]:
    return row if isinstance(row, tuple) else (row,)


def read_conversations(config: ChatPreprocessConfig, renderer: ChatRenderer, inputs: list[InputFile],
                       dtype: type[np.number], tokenize: RowTokenizer = tokenize_row) -> Conversations:
    """Every row of every input, tokenized and masked, in order (a row of several sequences adds
    them one after the other); under --strict the first refusal raises."""
    found = Conversations()
    progress = Progress(total_bytes=sum(i.size for i in inputs), log_interval=config.log_interval)
    batches = read_batches(inputs, _BATCH_BYTES, progress)
    for batch, rows in tokenized_batches(config, renderer, batches, tokenize):
        path = inputs[batch.file_index].path
        for number, row in zip(batch.line_numbers, rows):
            if isinstance(row, Refused):
                if config.strict:
                    detail = " ".join(row.detail.split())
                    raise BadRecordError(f"{path}:{number}: {row.reason}: {detail} (--strict: nothing was written)")
                found.refused.add(row.reason, f"{path}:{number}")
                continue
            for sequence in _sequences(row):
                found.tokens.append(np.asarray(sequence.tokens, dtype=dtype))
                found.masks.append(sequence.loss_mask)
        n_tokens = sum(len(sequence.tokens) for row in rows if not isinstance(row, Refused)
                       for sequence in _sequences(row))
        progress.update(len(batch.lines), n_tokens, sum(len(line) for line in batch.lines))
    return found


@dataclass(frozen=True)
class SFTPreprocessResult:
    tokens_prefix: str
    loss_mask_prefix: str
    conversations: int
    refused: SkippedRecords
    packing: PackingStats
    trained_tokens: int
    seconds: float


def write_packed(prefix: str, found: Conversations, bins: list[list[int]], dtype: type[np.number]) -> None:
    """Both datasets under temporary names, then published together: if either fails, neither is left."""
    writers: list[IndexedDatasetWriter] = []
    published: list[IndexedDatasetWriter] = []
    try:
        writers.append(IndexedDatasetWriter(f"{prefix}_tokens", dtype))
        writers.append(IndexedDatasetWriter(f"{prefix}_loss_mask", np.uint8))
        for members in bins:
            lengths = [len(found.tokens[i]) for i in members]
            writers[0].add_document(np.concatenate([found.tokens[i] for i in members]), lengths)
            writers[1].add_document(np.concatenate([found.masks[i] for i in members]), lengths)
        for writer in writers:
            writer.write_index()
        for writer in writers:
            writer.publish()
            published.append(writer)
    except BaseException:
        for writer in writers:
            writer.abort()
        for writer in published:  # a pair is only ever seen whole
            bin_path(writer.prefix).unlink(missing_ok=True)
            idx_path(writer.prefix).unlink(missing_ok=True)
        raise


def _provenance(config: SFTPreprocessConfig, renderer: ChatRenderer, tokenizer: Any, inputs: list[InputFile],
                result: SFTPreprocessResult) -> dict:
    refused = result.refused
    return {
        "tool": "megatron-telecom tools/preprocess_sft.py",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "format": {
            "tokens": str(Path(result.tokens_prefix).resolve()),
            "loss_mask": str(Path(result.loss_mask_prefix).resolve()),
            "layout": "indexed-dataset document = one packed sequence; its sequences = its conversations "
                      "(sequence_lengths are the document boundaries); loss_mask is uint8, 1 = trained label",
        },
        "inputs": [{"path": str(i.path.resolve()), "bytes": i.size, "sha256": i.sha256} for i in inputs],
        "tokenizer": asdict(tokenizer_identity(tokenizer)),
        "chat_template": renderer.identity(),
        "flags": {k: v for k, v in flat_values(config).items() if k not in ("input", "output_prefix")},
        "conversations": result.conversations,
        "trained_tokens": result.trained_tokens,
        "refused": {"total": refused.total, "by_reason": refused.counts, "examples": refused.examples},
        "packing": result.packing.as_dict(),
        "truncation": TRUNCATION_POLICY,
    }


@dataclass(frozen=True)
class RowsRead:
    """What `read_rows` loaded and read: inputs, tokenizer, renderer, token dtype and the rows."""

    inputs: list[InputFile]
    tokenizer: Any
    renderer: ChatRenderer
    dtype: type[np.number]
    found: Conversations


def read_rows(config: ChatPreprocessConfig, tokenize: RowTokenizer = tokenize_row, *,
              what: str = "conversation") -> RowsRead:
    """Resolve the inputs, load the tokenizer and its template, read every row; ValueError if none
    is accepted."""
    inputs = resolve_inputs(config.input)
    tok = config.tokenizer
    tokenizer = build_tokenizer(tok.tokenizer_type, tok.tokenizer_model)
    renderer = ChatRenderer(Path(tokenizer.model_path), config.chat_template)
    dtype = optimal_dtype(tokenizer.vocab_size)
    found = read_conversations(config, renderer, inputs, dtype, tokenize)
    if not found.tokens:
        raise ValueError(f"no {what} was accepted ({found.refused.total} refused: {found.refused.counts})")
    return RowsRead(inputs, tokenizer, renderer, dtype, found)


def preprocess_sft(config: SFTPreprocessConfig) -> SFTPreprocessResult:
    """Read, render, mask, pack and write; on any error (or Ctrl-C) no output file is left behind."""
    start = time.monotonic()
    rows = read_rows(config)
    inputs, tokenizer, renderer, dtype, found = rows.inputs, rows.tokenizer, rows.renderer, rows.dtype, rows.found
    lengths = [len(t) for t in found.tokens]
    bins = pack(lengths, config.seq_length, config.packing)
    write_packed(config.output_prefix, found, bins, dtype)
    stats = PackingStats(config.packing, config.seq_length, len(lengths), len(bins), sum(lengths))
    result = SFTPreprocessResult(
        tokens_prefix=f"{config.output_prefix}_tokens", loss_mask_prefix=f"{config.output_prefix}_loss_mask",
        conversations=len(lengths), refused=found.refused, packing=stats,
        trained_tokens=int(sum(int(m.sum()) for m in found.masks)), seconds=time.monotonic() - start)
    atomic_write_json(Path(f"{config.output_prefix}.json"), _provenance(config, renderer, tokenizer, inputs, result))
    return result


def summary(config: SFTPreprocessConfig, result: SFTPreprocessResult) -> str:
    """What the tool prints: counts, packing algorithm and efficiency, truncation, refusals."""
    p, stats, refused = result.packing, result.packing.as_dict(), result.refused
    lines = [f"Done: {result.conversations:,} conversations, {p.tokens:,} tokens ({result.trained_tokens:,} trained) "
             f"-> {p.sequences:,} sequences of <= {p.capacity} tokens in {result.seconds:.1f} s",
             f"  packing: {stats['description']}; efficiency {100 * p.efficiency:.2f}% "
             f"({stats['padding_tokens']:,} padding tokens)",
             f"  truncation: {TRUNCATION_POLICY}",
             f"  {result.tokens_prefix}.bin/.idx, {result.loss_mask_prefix}.bin/.idx, {config.output_prefix}.json"]
    return "\n".join(lines + refusal_lines(refused))


def refusal_lines(refused: SkippedRecords) -> list[str]:
    """The summary's refusals: a count per reason with the first places it happened."""
    if not refused.total:
        return []
    return [f"Refused {refused.total:,} rows:"] + [
        f"  {reason}: {refused.counts[reason]:,} (e.g. {', '.join(refused.examples[reason])})"
        for reason in sorted(refused.counts)]


def run_preprocess_sft(config: SFTPreprocessConfig) -> int:
    """`tools/preprocess_sft.py`: preprocess and print the summary; a --strict refusal is exit code 1."""
    return run_or_refuse(lambda: summary(config, preprocess_sft(config)))
