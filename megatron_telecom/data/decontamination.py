"""Benchmark decontamination: training text (CPT documents, SFT rows, DPO pairs) that shares a long
word n-gram with a benchmark question is dropped or flagged, so a reported gain is not memorisation.

What is compared (13-grams by default, lm-eval's normalisation, see ``ngram_overlap.py``):
- a benchmark question (every multiple-choice benchmark read into ``questions.Question``: TeleQnA,
  ORAN-Bench-13K, any generic JSONL exam) gives two texts: its question followed by its choices
  (so a short question is still caught with its choices), and its explanation (TeleQnA's);
- a training row gives one text per field: ``--json-keys`` of a document; each message of an SFT
  ``messages`` row; prompt and completion; DPO prompt, chosen and rejected. N-grams never span two
  texts. A row is contaminated when any of its n-grams is a benchmark n-gram.

Bad rows (not UTF-8, not JSON, not an object, a missing key or a field of the wrong type) are
counted by reason with their ``file:line`` and left out of the output, never fatal. Output and
report are written atomically.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from megatron_telecom.arguments import flat_values
from megatron_telecom.atomic import atomic_file, atomic_write_json
from megatron_telecom.data.chat_template import Refused
from megatron_telecom.data.jsonl_input import read_batches, resolve_inputs
from megatron_telecom.data.ngram_overlap import (
    DEFAULT_N,
    NORMALISATION,
    NgramIndex,
    batch_ngrams,
    normalize,
)
from megatron_telecom.data.preprocess import SkippedRecords
from megatron_telecom.data.sft import parse_record
from megatron_telecom.evaluation.benchmarks import benchmark_source, read_benchmark
from megatron_telecom.evaluation.questions import Question
from megatron_telecom.jsonl import fast_loads
from megatron_telecom.version import __version__

FLAG_KEY = "contamination"


@dataclass(frozen=True, kw_only=True)
class DecontaminateConfig:
    """Flags of `tools/decontaminate.py` (Megatron-LM's names where preprocess_data has them)."""

    input: list[str]
    """Input JSONL files or globs (.jsonl, .jsonl.gz): CPT documents, SFT rows or DPO pairs."""
    output: str
    """JSONL written: the clean rows (--action drop) or every row, hits under "contamination" (--action flag)."""
    benchmarks: list[str] = field(default_factory=lambda: ["teleqna", "oranbench"])
    """NAME[=DATA] each: teleqna, oranbench (=their zip/folder; default ../shared/data), exam.jsonl or NAME=exam.jsonl."""
    ngram: int = DEFAULT_N
    """Words per n-gram (GPT-3 and lm-eval use 13)."""
    action: Literal["drop", "flag"] = "drop"
    """drop: leave contaminated rows out; flag: keep them with a "contamination" key."""
    data_format: Literal["auto", "text", "sft", "dpo"] = "auto"
    """auto: by each row's keys (messages or prompt/completion: sft; chosen/rejected: dpo; else --json-keys)."""
    json_keys: tuple[str, ...] = ("text",)
    """Keys of a document's text (a string or a list of strings), as in tools/preprocess_data.py."""
    report: str | None = None
    """JSON report (None: <output without .jsonl>.decontamination.json)."""
    removed_output: str | None = None
    """With --action drop: also write the dropped rows here, each with its "contamination" key."""
    examples: int = 5
    """Examples kept per benchmark in the report."""
    batch_bytes: int = 1 << 22
    """Raw input bytes hashed per batch (memory: about 30 bytes per input byte)."""

    def __post_init__(self) -> None:
        for flag, value in (("--ngram", self.ngram), ("--batch-bytes", self.batch_bytes)):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if not self.benchmarks:
            raise ValueError("--benchmarks: give at least one (teleqna, oranbench, exam.jsonl)")
        if not self.json_keys:
            raise ValueError("--json-keys needs at least one key")
        if self.removed_output and self.action != "drop":
            raise ValueError("--removed-output only applies with --action drop")

    @property
    def report_path(self) -> Path:
        out = Path(self.output)
        return Path(self.report) if self.report else out.with_name(out.name.removesuffix(".jsonl") + ".decontamination.json")


@dataclass
class Hits:
    """What one row (or document) shares with the benchmarks."""

    questions: dict[str, set[str]] = field(default_factory=dict)
    """Benchmark -> ids of the questions it shares an n-gram with."""
    ngrams: dict[str, int] = field(default_factory=dict)
    """Benchmark -> how many of its n-grams were found there."""
    examples: dict[str, dict[str, str]] = field(default_factory=dict)
    """Benchmark -> the first hit: question id, field (question_and_choices or explanation), n-gram."""

    def record(self) -> dict[str, Any]:
        """The "contamination" value a flagged row gets."""
        return {"benchmarks": {b: sorted(ids) for b, ids in sorted(self.questions.items())},
                "ngrams": dict(sorted(self.ngrams.items()))}


@dataclass(frozen=True)
class _Owner:
    benchmark: str
    question: Question
    field: str


@dataclass
class BenchmarkStats:
    """A benchmark as indexed: its source, questions, n-grams, and the questions too short to check."""

    data: str | None
    questions: int
    ngrams: int = 0
    questions_without_ngrams: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


class Decontaminator:
    """The n-grams of every benchmark question, and the rows or documents that share one."""

    def __init__(self, benchmarks: dict[str, tuple[str | None, list[Question]]], n: int = DEFAULT_N,
                 skipped: dict[str, dict[str, int]] | None = None) -> None:
        self.n = n
        self.owners: list[_Owner] = []
        texts: list[str] = []
        self.stats: dict[str, BenchmarkStats] = {}
        for name, (data, questions) in benchmarks.items():
            self.stats[name] = BenchmarkStats(data, len(questions), skipped=(skipped or {}).get(name, {}))
            for q in questions:
                texts.append(" ".join((q.question, *q.options)))
                self.owners.append(_Owner(name, q, "question_and_choices"))
                if q.explanation:
                    texts.append(q.explanation)
                    self.owners.append(_Owner(name, q, "explanation"))
        self.index = NgramIndex.build(texts, range(len(texts)), n)
        checked = {(o.benchmark, o.question.id) for o, text in zip(self.owners, texts)
                   if len(normalize(text).split()) >= n}
        for name, stats in self.stats.items():
            stats.questions_without_ngrams = stats.questions - sum(1 for b, _ in checked if b == name)
        benchmark_of = np.array([list(self.stats).index(o.benchmark) for o in self.owners] or [0], np.int64)
        counts = np.bincount(benchmark_of[self.index.owners], minlength=len(self.stats))
        for count, stats in zip(counts.tolist(), self.stats.values()):
            stats.ngrams = count

    @classmethod
    def from_specs(cls, specs: Sequence[str], n: int = DEFAULT_N, flag: str = "--benchmarks") -> Decontaminator:
        """Read each ``NAME[=DATA]`` benchmark (see ``benchmarks.benchmark_source``) and index it."""
        benchmarks, skipped = {}, {}
        for spec in specs:
            name, reader, data = benchmark_source(spec, flag, spec)
            if name in benchmarks:
                raise ValueError(f"{flag} {spec}: a second benchmark named {name!r}; name it NAME=FILE")
            try:
                questions = read_benchmark(reader, data)
            except ValueError as exc:
                raise ValueError(f"{flag} {spec}: {exc}") from None
            benchmarks[name] = (data, questions.questions)
            skipped[name] = questions.malformed
        return cls(benchmarks, n, skipped)

    def match(self, groups: Sequence[Sequence[str]]) -> dict[int, Hits]:
        """Hits of each group of texts (a row's fields) that shares an n-gram with a benchmark."""
        texts = [text for group in groups for text in group]
        group_of_text = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
        found = batch_ngrams(texts, self.n)
        positions, owners = self.index.lookup(found.hashes)
        hits: dict[int, Hits] = {}
        for k, owner in zip(positions.tolist(), owners.tolist()):
            row = hits.setdefault(int(group_of_text[found.text_index[k]]), Hits())
            o = self.owners[owner]
            row.ngrams[o.benchmark] = row.ngrams.get(o.benchmark, 0) + 1
            row.questions.setdefault(o.benchmark, set()).add(o.question.id)
            if o.benchmark not in row.examples:
                row.examples[o.benchmark] = {"question": o.question.id, "field": o.field,
                                             "ngram": found.text_of(k, self.n),
                                             "question_text": o.question.question[:300]}
        return hits


def _field_texts(value: Any, what: str) -> list[str]:
    """A field as texts: a string, a list of strings, or messages (their contents)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        texts = [v.get("content") if isinstance(v, dict) else v for v in value]
        if all(isinstance(t, str) for t in texts):
            return texts
    raise Refused("bad_format" if isinstance(value, list) else "non_string",
                  f"{what} is neither text nor a list of messages with string content")


def row_texts(record: dict, data_format: str, json_keys: Sequence[str]) -> list[str]:
    """The texts of one row to check, per ``--data-format``; ``Refused`` with the reason for a bad row."""
    if data_format == "auto":
        if "messages" in record or ("prompt" in record and "completion" in record):
            data_format = "sft"
        elif "chosen" in record or "rejected" in record:
            data_format = "dpo"
        else:
            data_format = "text"
    if data_format == "sft":
        keys = ("messages",) if "messages" in record else ("prompt", "completion")
    elif data_format == "dpo":
        keys = ("prompt", "chosen", "rejected") if "prompt" in record else ("chosen", "rejected")
    else:
        keys = tuple(json_keys)
    missing = [k for k in keys if k not in record]
    if missing:
        raise Refused("missing_key", f"no key {missing[0]!r} (keys: {sorted(record)[:8]})")
    return [text for k in keys for text in _field_texts(record[k], repr(k))]


@dataclass
class DecontaminationReport:
    """Counts of a run: rows, bad rows by reason, hits per benchmark and per source, examples."""

    rows: int = 0
    contaminated: int = 0
    written: int = 0
    bad: SkippedRecords = field(default_factory=SkippedRecords)
    by_benchmark: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    input_bytes: int = 0
    seconds: float = 0.0
    index_seconds: float = 0.0

    def add(self, hits: Hits, where: str, row_id: Any, source: str, keep_examples: int) -> None:
        """Count one contaminated row."""
        self.contaminated += 1
        per_source = self.by_source.setdefault(source, {})
        for benchmark, ids in hits.questions.items():
            entry = self.by_benchmark.setdefault(benchmark, {"rows": 0, "ngrams": 0, "questions": set()})
            entry["rows"] += 1
            entry["ngrams"] += hits.ngrams[benchmark]
            entry["questions"].update(ids)
            per_source[benchmark] = per_source.get(benchmark, 0) + 1
            shown = self.examples.setdefault(benchmark, [])
            if len(shown) < keep_examples:
                shown.append({"row": where, "row_id": row_id, **hits.examples[benchmark]})

    def payload(self, config: DecontaminateConfig, decontaminator: Decontaminator, inputs: list) -> dict:
        """The JSON report."""
        benchmarks = {}
        for name, stats in decontaminator.stats.items():
            found = self.by_benchmark.get(name, {"rows": 0, "ngrams": 0, "questions": set()})
            benchmarks[name] = {"data": stats.data, "questions": stats.questions, "ngrams_indexed": stats.ngrams,
                                "questions_without_ngrams": stats.questions_without_ngrams,
                                "skipped_questions": stats.skipped, "rows_hit": found["rows"],
                                "ngrams_hit": found["ngrams"],
                                "questions_hit": len(found["questions"]),
                                "question_ids_hit": sorted(found["questions"])}
        return {
            "tool": "megatron-telecom tools/decontaminate.py", "version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ngram": config.ngram, "normalisation": NORMALISATION, "action": config.action,
            "flags": {k: v for k, v in flat_values(config).items() if k not in ("input",)},
            "inputs": [{"path": str(i.path.resolve()), "bytes": i.size, "sha256": i.sha256} for i in inputs],
            "rows": {"read": self.rows, "contaminated": self.contaminated, "written": self.written,
                     "bad": {"total": self.bad.total, "by_reason": self.bad.counts, "examples": self.bad.examples}},
            "benchmarks": benchmarks, "by_source": self.by_source, "examples": self.examples,
            "seconds": round(self.seconds, 3), "index_seconds": round(self.index_seconds, 3),
            "mb_per_s": round(self.input_bytes / 1e6 / max(self.seconds, 1e-9), 2),
        }


@dataclass
class _Position:
    done_bytes: int = 0
    position: int = 0


def _parsed_rows(config: DecontaminateConfig, lines: list[bytes], wheres: list[str],
                 report: DecontaminationReport) -> tuple[list[tuple[int, dict]], list[list[str]]]:
    """(line index, record) and texts of each good row of a batch; bad rows are counted."""
    rows, groups = [], []
    for i, line in enumerate(lines):
        report.rows += 1
        try:
            record = _parse(line)
            groups.append(row_texts(record, config.data_format, config.json_keys))
        except Refused as refused:
            report.bad.add(refused.reason, wheres[i])
            continue
        rows.append((i, record))
    return rows, groups


def _parse(line: bytes) -> dict:
    """The JSON object of a line, fast; ``sft.parse_record`` names the reason of a bad line."""
    try:
        record = fast_loads(line)
    except ValueError:
        record = parse_record(line)
    if not isinstance(record, dict):
        raise Refused("not_an_object", f"a JSON {type(record).__name__}, not an object")
    return record


def _line(raw: bytes) -> bytes:
    return raw if raw.endswith(b"\n") else raw + b"\n"


def _flagged(record: dict, hits: Hits) -> bytes:
    return (json.dumps({**record, FLAG_KEY: hits.record()}, ensure_ascii=False) + "\n").encode()


def decontaminate(config: DecontaminateConfig, decontaminator: Decontaminator | None = None) -> DecontaminationReport:
    """Check every row of the inputs, write the output (and the dropped rows) and the report;
    ``decontaminator``: an index already built for ``config``'s benchmarks (read them when None)."""
    inputs = resolve_inputs(config.input)  # a missing input fails before the benchmarks are read
    start = time.monotonic()
    decontaminator = decontaminator or Decontaminator.from_specs(config.benchmarks, config.ngram)
    report = DecontaminationReport(index_seconds=time.monotonic() - start)
    start, position = time.monotonic(), _Position()
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:  # every output appears complete, or none does
        out = stack.enter_context(atomic_file(config.output, "wb"))
        removed = stack.enter_context(atomic_file(config.removed_output, "wb")) if config.removed_output else None
        for batch in read_batches(inputs, config.batch_bytes, position):
            name = str(inputs[batch.file_index].path)
            wheres = [f"{name}:{number}" for number in batch.line_numbers]
            rows, groups = _parsed_rows(config, batch.lines, wheres, report)
            found = decontaminator.match(groups)
            for row, (i, record) in enumerate(rows):
                hits = found.get(row)
                if hits is None:
                    out.write(_line(batch.lines[i]))
                    report.written += 1
                    continue
                source = record["source"] if isinstance(record.get("source"), str) else Path(name).name
                report.add(hits, wheres[i], record.get("id"), source, config.examples)
                if config.action == "flag":
                    out.write(_flagged(record, hits))
                    report.written += 1
                elif removed is not None:
                    removed.write(_flagged(record, hits))
    report.input_bytes = sum(i.size for i in inputs)
    report.seconds = time.monotonic() - start
    atomic_write_json(config.report_path, report.payload(config, decontaminator, inputs))
    return report


def summary(config: DecontaminateConfig, report: DecontaminationReport) -> str:
    """What the tool prints: rows, hits per benchmark, bad rows by reason, speed."""
    mb = report.input_bytes / 1e6
    verb = "dropped" if config.action == "drop" else "flagged"
    lines = [f"Done: {report.rows:,} rows, {mb:,.1f} MB in {report.seconds:.1f} s "
             f"({mb / max(report.seconds, 1e-9):,.1f} MB/s; benchmarks indexed in {report.index_seconds:.1f} s)",
             f"  {report.contaminated:,} rows share a {config.ngram}-gram with a benchmark ({verb}); "
             f"{report.written:,} rows written to {config.output}"]
    for name, entry in sorted(report.by_benchmark.items()):
        lines.append(f"  {name}: {entry['rows']:,} rows, {len(entry['questions']):,} questions")
    if report.bad.total:
        lines.append(f"Skipped {report.bad.total:,} bad rows:")
        lines += [f"  {reason}: {count:,} (e.g. {', '.join(report.bad.examples[reason])})"
                  for reason, count in sorted(report.bad.counts.items())]
    lines.append(f"  report: {config.report_path}")
    return "\n".join(lines)


def run_decontaminate(config: DecontaminateConfig) -> int:
    """`tools/decontaminate.py`: check, write, print the summary."""
    print(summary(config, decontaminate(config)))
    return 0
