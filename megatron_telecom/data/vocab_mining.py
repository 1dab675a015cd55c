"""Mining telecom vocabulary: the strings whose one-token form would save the most tokens.

One streaming pass over curated JSONL (the `text` key) counts every unit the base tokenizer hands
its model whole (`vocab_units`: byte-level BPE pre-tokens such as `" PDCCH"`; SentencePiece words
such as `"gNB-CU-CP"`), and every whitespace-delimited word with its punctuation stripped. Held-out
documents (`heldout.is_heldout`, the rule of `tools/split_heldout.py`) are never read, so an
evaluation on them measures text the new vocabulary was not chosen from.

A unit is a candidate when (the documented rules, each skip counted under its reason):
- it occurs at least `min_count` times;
- it is 2..`max_chars` characters long (a leading space not counted), has a letter, and no
  whitespace or control character inside;
- it is not a hexadecimal string (`0x1F`, `3fa9c0`), a URL or an e-mail address;
- the base tokenizer gives it more than one piece ("already one token" otherwise), and its
  string is not already a vocabulary entry the tokenizer just never produces here.
Its saving is count x (pieces - 1): the tokens one new token saves on the mined corpus. Words the
pre-tokenisation cuts into several pre-tokens (`gNB-CU-CP` under GPT-2's or Llama-3's regex) can
never be one token: they are counted under "split by the pre-tokenizer" with the saving they would
have had. Multi-word expressions span pre-tokens in every tokenizer we extend (a space starts a
new pre-token; SentencePiece words are chunked at spaces by the preprocessing word cache), so
none is mined. Candidates are ranked by saving, ties by string: the same input gives the same bytes.

Memory is bounded: when a counter holds more than `max_distinct` strings, the rarest are dropped
(all with a count up to the smallest threshold that halves it); `pruned_below` in the report is
the largest threshold used, the most a surviving count can be short by.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_telecom.atomic import atomic_write_json, atomic_write_text
from megatron_telecom.data.heldout import DEFAULT_SEED, document_id, is_heldout
from megatron_telecom.data.jsonl_input import resolve_inputs
from megatron_telecom.data.tokenizers import TokenizerConfig, build_tokenizer, tokenizer_identity
from megatron_telecom.data.vocab_units import TokenUnits, strip_punctuation, token_units
from megatron_telecom.jsonl import read_jsonl

CANDIDATES_JSON = "candidates.json"
CANDIDATES_TSV = "candidates.tsv"
_HEX = re.compile(r"(0[xX])?[0-9a-fA-F]*[0-9][0-9a-fA-F]*")
_HEX_MIN_CHARS = 4
_URL = re.compile(r"://|^www\.|\.(com|org|net|html?)$|@", re.IGNORECASE)
_EXAMPLES_PER_REASON = 20


@dataclass(kw_only=True)
class MineVocabularyConfig:
    """Flags of `tools/mine_vocabulary.py`: corpus, base tokenizer, rules and output."""

    input: list[str]
    """Curated JSONL(.gz) files or globs (the 'text' key is read)."""
    output_dir: str
    """Gets candidates.json (for tools/extend_tokenizer.py) and candidates.tsv (for review)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    json_key: str = "text"
    """Key of the document text."""
    heldout_fraction: float = 0.1
    """Documents tools/split_heldout.py would hold out at this fraction are not read (0: read all)."""
    id_key: str = "id"
    """Document id key of the held-out rule (as tools/split_heldout.py --id-key)."""
    seed: str = DEFAULT_SEED
    """Salt of the held-out rule (as tools/split_heldout.py --seed)."""
    min_count: int = 5
    """A candidate occurs at least this often."""
    max_chars: int = 32
    """A candidate has at most this many characters (a leading space not counted)."""
    top: int = 20000
    """Candidates written, best saving first."""
    max_distinct: int = 2_000_000
    """Strings a counter holds before the rarest are dropped (bounded memory)."""

    def __post_init__(self) -> None:
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError(f"--heldout-fraction {self.heldout_fraction} must be in [0, 1)")
        if self.min_count < 1 or self.top < 1 or self.max_chars < 2 or self.max_distinct < 2:
            raise ValueError("--min-count and --top must be >= 1, --max-chars and --max-distinct >= 2")


class BoundedCounter(Counter):
    """A Counter that drops its rarest strings when it holds more than `limit` (deterministically)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.pruned_below = 0

    def add(self, items: list[str]) -> None:
        self.update(items)
        if len(self) > self.limit:
            counts = sorted(self.values(), reverse=True)
            threshold = counts[self.limit // 2]
            for key in [k for k, c in self.items() if c <= threshold]:
                del self[key]
            self.pruned_below = max(self.pruned_below, threshold)


@dataclass(kw_only=True)
class Candidate:
    """One proposed token: its vocabulary string, text, count, old pieces and saving."""

    token: str
    """The vocabulary entry (e.g. 'ĠPDCCH')."""
    text: str
    """What it decodes to (e.g. ' PDCCH')."""
    count: int
    """Occurrences in the mined documents."""
    pieces: list[int]
    """Ids the base tokenizer gives the text."""
    saving: int
    """count x (pieces - 1): tokens saved on the mined documents."""


@dataclass(kw_only=True)
class MiningStats:
    """What the pass read and why strings were skipped (distinct strings and their occurrences)."""

    documents: int = 0
    heldout_documents_skipped: int = 0
    bytes: int = 0
    units: int = 0
    distinct_units: int = 0
    pruned_below: int = 0
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped_examples: dict[str, list[dict]] = field(default_factory=dict)

    def skip(self, reason: str, text: str, count: int, saving: int | None = None) -> None:
        entry = self.skipped.setdefault(reason, {"distinct": 0, "occurrences": 0})
        entry["distinct"] += 1
        entry["occurrences"] += count
        examples = self.skipped_examples.setdefault(reason, [])
        examples.append({"text": text, "count": count, **({} if saving is None else {"saving": saving})})


def rule_violation(text: str, config: MineVocabularyConfig) -> str | None:
    """The rule a unit's text breaks (see the module docstring), or None."""
    core = text[1:] if text.startswith(" ") else text
    if not 2 <= len(core) <= config.max_chars:
        return "length"
    if not any(c.isalpha() for c in core):
        return "no letter"
    if any(c.isspace() or not c.isprintable() for c in core):
        return "whitespace or control character"
    if len(core) >= _HEX_MIN_CHARS and _HEX.fullmatch(core):
        return "hexadecimal"
    if _URL.search(core):
        return "URL or e-mail"
    return None


def count_units(config: MineVocabularyConfig, units: TokenUnits) -> tuple[BoundedCounter, BoundedCounter, MiningStats]:
    """One pass: counts of the tokenizer's units and of punctuation-stripped words, training side only."""
    unit_counts, word_counts = BoundedCounter(config.max_distinct), BoundedCounter(config.max_distinct)
    stats = MiningStats()
    for item in resolve_inputs(config.input):
        for record in read_jsonl(item.path):
            if config.heldout_fraction and is_heldout(document_id(record, config.id_key),
                                                      config.heldout_fraction, config.seed):
                stats.heldout_documents_skipped += 1
                continue
            text = record.get(config.json_key)
            if not isinstance(text, str):
                raise ValueError(f"{item.path}: a record has no string {config.json_key!r} (use --json-key)")
            stats.documents += 1
            stats.bytes += len(text.encode("utf-8"))
            found = units.units(text)
            stats.units += len(found)
            unit_counts.add(found)
            if units.cuts_words:
                word_counts.add([w for w in map(strip_punctuation, text.split()) if w])
    stats.distinct_units = len(unit_counts)
    stats.pruned_below = max(unit_counts.pruned_below, word_counts.pruned_below)
    return unit_counts, word_counts, stats


def select_candidates(unit_counts: Counter, word_counts: Counter, units: TokenUnits,
                      config: MineVocabularyConfig, stats: MiningStats) -> list[Candidate]:
    """Apply the rules to the counted strings; candidates ranked by saving, then by token string."""
    candidates = []
    for text, count in unit_counts.items():
        if count < config.min_count:
            continue
        reason = rule_violation(text, config)
        pieces = units.pieces(text) if reason is None else []
        token = units.token_string(text)
        if reason is None and len(pieces) == 1:
            reason = "already one token"
        elif reason is None and units.in_vocabulary(token):
            reason = "in the vocabulary, never produced here"
        if reason is not None:
            stats.skip(reason, text, count)
            continue
        candidates.append(Candidate(token=token, text=text, count=count, pieces=pieces,
                                    saving=count * (len(pieces) - 1)))
    for word, count in word_counts.items():
        if count >= config.min_count and units.unit_of_word(word) is None and rule_violation(word, config) is None:
            pieces = sum(len(units.pieces(u)) for u in units.units(" " + word))  # as after a space
            stats.skip("split by the pre-tokenizer", word, count, count * (pieces - 1))
    candidates.sort(key=lambda c: (-c.saving, c.token))
    for examples in stats.skipped_examples.values():
        examples.sort(key=lambda e: (-e.get("saving", e["count"]), e["text"]))
        del examples[_EXAMPLES_PER_REASON:]
    return candidates[:config.top]


def mine_vocabulary(config: MineVocabularyConfig) -> tuple[list[Candidate], MiningStats]:
    """Count, filter and rank; write candidates.json and candidates.tsv atomically into output_dir."""
    tok = config.tokenizer
    tokenizer = build_tokenizer(tok.tokenizer_type, tok.tokenizer_model, vocab_size=tok.vocab_size)
    units = token_units(tokenizer)
    unit_counts, word_counts, stats = count_units(config, units)
    candidates = select_candidates(unit_counts, word_counts, units, config, stats)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    payload = {
        "base": asdict(tokenizer_identity(tokenizer)),
        "family": units.family,
        "config": {k: v for k, v in asdict(config).items() if k != "output_dir"},
        "stats": asdict(stats),
        "candidates": [asdict(c) for c in candidates],
    }
    atomic_write_json(output / CANDIDATES_JSON, payload)
    atomic_write_text(output / CANDIDATES_TSV, candidates_tsv(candidates))
    return candidates, stats


def candidates_tsv(candidates: list[Candidate]) -> str:
    """rank, saving, count, pieces, text (JSON-quoted: leading spaces stay visible), token."""
    rows = ["rank\tsaving\tcount\tpieces\ttext\ttoken"]
    rows += [f"{i}\t{c.saving}\t{c.count}\t{len(c.pieces)}\t{json.dumps(c.text, ensure_ascii=False)}\t{c.token}"
             for i, c in enumerate(candidates, 1)]
    return "\n".join(rows) + "\n"


def run_mine(config: MineVocabularyConfig) -> int:
    """`tools/mine_vocabulary.py`: mine and print a summary."""
    candidates, stats = mine_vocabulary(config)
    print(f"read {stats.documents:,} documents ({stats.bytes:,} bytes; {stats.heldout_documents_skipped:,} "
          f"held-out documents not read), {stats.units:,} units, {stats.distinct_units:,} distinct")
    for reason, entry in sorted(stats.skipped.items()):
        print(f"skipped {reason:<40} {entry['distinct']:>9,} strings {entry['occurrences']:>12,} occurrences")
    saving = sum(c.saving for c in candidates)
    print(f"{len(candidates):,} candidates (saving {saving:,} tokens) -> {config.output_dir}/{CANDIDATES_JSON}, "
          f"{CANDIDATES_TSV}")
    return 0
