"""Curated JSONL -> instruction rows (TRL / tools/preprocess_sft.py JSONL) and preference pairs
(tools/preprocess_dpo.py JSONL), from the structure that already holds the answers.

Tasks (`vocabulary.py` finds their entries):
- ``abbreviation``: "In 3GPP TS 23.501, what does AMF stand for?" -> the expansion;
- ``definition``: "How does RFC 3261 define "Dialog"?" -> the definition;
- ``spec_identification``: title -> document, document -> title, scope/abstract -> document and
  document -> scope/abstract;
- rows of other tools (``--extra-sft [TASK=]FILE``, e.g. the working-group classification train
  split) are checked as SFT rows and merged with their provenance.

Every answer is copied from the record (whitespace collapsed), never written, and checked to be a
span of it (a candidate that is not, e.g. cells of an ASCII figure, is ``not_verbatim``); each row records its
task, source, document, clause and template. Rows are written in input order; a (task, term,
answer) seen before is a ``duplicate`` and left out (``UE User Equipment`` once, not once per spec).
The prompt comes from a fixed set of templates, chosen per row by the seed (`templates.py`).
Rejected candidates and bad input lines are counted by reason in the sidecar, with examples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from megatron_telecom.arguments import flat_values
from megatron_telecom.atomic import atomic_write_json
from megatron_telecom.data.chat_template import Refused
from megatron_telecom.data.instructions.negatives import NegativePools
from megatron_telecom.data.instructions.templates import (
    choose_template,
    render_prompt,
    template_key,
    templates_sha256,
)
from megatron_telecom.data.instructions.vocabulary import (
    Entry,
    Rejected,
    collapse,
    document_family,
    document_name,
    found_verbatim,
    record_entries,
)
from megatron_telecom.data.jsonl_input import InputFile, read_batches, resolve_inputs
from megatron_telecom.data.preprocess import Progress, SkippedRecords
from megatron_telecom.data.sft import parse_record, refusal_lines, validated_messages
from megatron_telecom.jsonl import write_jsonl
from megatron_telecom.version import __version__

TASKS = ("abbreviation", "definition", "spec_identification")


@dataclass(frozen=True, kw_only=True)
class BuildSFTConfig:
    """Flags of `tools/build_sft_data.py`."""

    input: list[str]
    """Curated JSONL files or globs (tools/curate_corpus.py output: 3GPP clause documents, RFCs)."""
    output: str
    """SFT JSONL written: {"messages": [user, assistant], "task", "source", "doc_id", "document", "clause", ...}."""
    dpo_output: str | None = None
    """Also write preference pairs here (prompt/chosen/rejected messages; rejected = a hard negative)."""
    extra_sft: list[str] = field(default_factory=list)
    """[TASK=]FILE each: SFT JSONL of another tool (e.g. the working-group train split), merged with provenance."""
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    """Tasks built from the corpus: abbreviation, definition, spec_identification."""
    seed: int = 1234
    """Seeds the choice of prompt template per row (same input and seed: same bytes)."""
    keep_duplicates: bool = False
    """Keep a (task, term, answer) seen in an earlier document (default: count it as duplicate)."""
    report: str | None = None
    """JSON sidecar (None: <output without .jsonl>.build.json)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"--tasks {' '.join(unknown)}: choose from {', '.join(TASKS)}")
        if self.dpo_output and Path(self.dpo_output).resolve() == Path(self.output).resolve():
            raise ValueError("--dpo-output must differ from --output")

    @property
    def report_path(self) -> Path:
        out = Path(self.output)
        return Path(self.report) if self.report else out.with_name(out.name.removesuffix(".jsonl") + ".build.json")


@dataclass
class BuiltRow:
    """One instruction row and what the preference pair of it needs."""

    row: dict
    family: str
    pool_index: int = -1


@dataclass
class BuildStats:
    """Counts for the sidecar and the summary."""

    records: int = 0
    records_by_source: Counter = field(default_factory=Counter)
    rows_by_task: Counter = field(default_factory=Counter)
    rows_by_source: Counter = field(default_factory=Counter)
    rows_by_task_and_source: dict[str, Counter] = field(default_factory=dict)
    rows_by_document: Counter = field(default_factory=Counter)
    templates: dict[str, Counter] = field(default_factory=dict)
    bad: SkippedRecords = field(default_factory=SkippedRecords)
    bad_details: dict[str, list[str]] = field(default_factory=dict)
    pairs_by_task: Counter = field(default_factory=Counter)
    pairs_by_pool: Counter = field(default_factory=Counter)
    pairs_missing: SkippedRecords = field(default_factory=SkippedRecords)
    input_bytes: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def reject(self, reason: str, where: str, detail: str) -> None:
        self.bad.add(reason, where)
        shown = self.bad_details.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(f"{where}: {detail}")

    def count_row(self, row: dict) -> None:
        task, source = row["task"], row["source"]
        if "provenance" in row:  # an --extra-sft row: counted under its file (its own source may be a spec)
            source = f"extra:{Path(row['provenance']['file']).name}"
        self.rows_by_task[task] += 1
        self.rows_by_source[source] += 1
        self.rows_by_task_and_source.setdefault(task, Counter())[source] += 1
        self.rows_by_document[row.get("document") or row.get("doc_id") or source] += 1
        if "template" in row:
            self.templates.setdefault(template_key(task, row.get("variant", "")), Counter())[row["template"]] += 1


def _message_row(prompt: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def entry_row(entry: Entry, record: dict, seed: int) -> dict:
    """The SFT row of an entry: prompt from its seeded template, the answer as found."""
    doc = document_name(record)
    index = choose_template(seed, entry.task, entry.variant, doc, entry.term)
    prompt = render_prompt(index, entry.task, entry.variant, doc=doc, term=entry.term,
                           source=str(record.get("source")))
    row = {"messages": _message_row(prompt, entry.answer), "task": entry.task}
    if entry.variant:
        row["variant"] = entry.variant
    row.update({"source": record.get("source"), "doc_id": record.get("doc_id"), "document": doc,
                "clause": entry.clause, "term": entry.term, "template": index,
                "record_id": record.get("id", record.get("doc_id"))})
    return row


def curated_records(inputs: list[InputFile], stats: BuildStats) -> Iterator[dict]:
    """The curated records of the inputs, in order; bad lines are counted by reason."""
    for batch in read_batches(inputs, 1 << 22, Progress(total_bytes=0, log_interval=0)):
        name = inputs[batch.file_index].path.name
        for number, line in zip(batch.line_numbers, batch.lines):
            stats.records += 1
            try:
                record = parse_record(line)
            except Refused as refused:
                stats.reject(refused.reason, f"{name}:{number}", refused.detail)
                continue
            if not isinstance(record.get("text"), str):
                stats.reject("no_text", f"{name}:{number}", "no string 'text'")
                continue
            stats.records_by_source[str(record.get("source"))] += 1
            yield record


def _dedup_key(entry: Entry, record: dict) -> tuple:
    if entry.task == "spec_identification":  # the same document twice (two versions, two files)
        return entry.task, entry.variant, document_name(record), collapse(entry.answer).lower().rstrip(".")
    return entry.task, entry.term.lower(), collapse(entry.answer).lower().rstrip(".")


def corpus_rows(config: BuildSFTConfig, inputs: list[InputFile], stats: BuildStats) -> list[BuiltRow]:
    """Rows of every entry of the curated inputs, duplicates and rejections counted."""
    seen: set[tuple] = set()
    rows: list[BuiltRow] = []
    for record in curated_records(inputs, stats):
        where = f"{record.get('id', record.get('doc_id'))}"
        if document_name(record) is None:  # a prompt must name its document (3GPP number or RFC)
            if record.get("source") in ("3gpp", "rfc"):
                stats.reject("no_document_name", where, "no spec_number / RFC number in the metadata")
            continue
        text = None
        for entry in record_entries(record):
            if isinstance(entry, Rejected):
                stats.reject(entry.reason, f"{where} clause {entry.clause}", entry.detail)
                continue
            if entry.task not in config.tasks:
                continue
            text = collapse(record["text"]) if text is None else text
            if not found_verbatim(entry.answer, record, text):  # e.g. cells of an ASCII figure
                stats.reject("not_verbatim", f"{where} clause {entry.clause}", f"{entry.term} -> {entry.answer}"[:120])
                continue
            key = _dedup_key(entry, record)
            if key in seen and not config.keep_duplicates:
                stats.reject("duplicate", f"{where} clause {entry.clause}", f"{entry.term} -> {entry.answer}"[:120])
                continue
            seen.add(key)
            rows.append(BuiltRow(entry_row(entry, record, config.seed), document_family(record)))
    return rows


def parse_extra_spec(spec: str) -> tuple[str | None, Path]:
    """``[TASK=]FILE`` of --extra-sft -> (task or None, path)."""
    task, _, path = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    if not Path(path).is_file():
        raise ValueError(f"--extra-sft {spec}: no such file")
    return task or None, Path(path)


def check_sft_row(record: dict) -> None:
    """Refused (with the reason preprocess_sft would give) unless the row is a trainable SFT row."""
    if "messages" in record:
        messages = validated_messages(record["messages"], "messages")
        if not any(m["role"] == "assistant" for m in messages):
            raise Refused("no_assistant_tokens", "no assistant message")
    elif "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            if not prompt.strip() or not completion.strip():
                raise Refused("empty_content", "an empty prompt or completion")
        else:
            validated_messages(prompt, "prompt")
            validated_messages(completion, "completion")
    else:
        raise Refused("bad_format", f"neither messages nor prompt/completion (keys: {sorted(record)[:8]})")


def extra_rows(specs: list[str], stats: BuildStats) -> tuple[list[BuiltRow], list[InputFile]]:
    """Rows of other tools' SFT files, each with its task and provenance (file, line)."""
    rows, files = [], []
    for spec in specs:
        task, path = parse_extra_spec(spec)
        inputs = resolve_inputs([str(path)])
        for batch in read_batches(inputs, 1 << 22, Progress(total_bytes=0, log_interval=0)):
            for number, line in zip(batch.line_numbers, batch.lines):
                try:
                    record = parse_record(line)
                    check_sft_row(record)
                except Refused as refused:
                    stats.reject(f"extra_{refused.reason}", f"{path.name}:{number}", refused.detail)
                    continue
                row = {**record, "task": task or record.get("task") or path.stem,
                       "source": record.get("source") or f"extra:{path.name}",
                       "provenance": {"file": str(path), "line": number}}
                rows.append(BuiltRow(row, family=row["source"]))
        files += inputs
    return rows, files


def _pair(row: dict, rejected: dict, pool: str) -> dict:
    user, assistant = row["messages"]
    pair = {"prompt": [user], "chosen": [assistant], "rejected": [rejected["messages"][1]]}
    pair.update({k: v for k, v in row.items() if k != "messages"})
    pair["negative"] = {"term": rejected["term"], "document": rejected["document"], "clause": rejected["clause"],
                        "pool": pool}
    return pair


def preference_pairs(rows: list[BuiltRow], stats: BuildStats) -> list[dict]:
    """A pair per corpus row that has a hard negative (`negatives.py`); others are counted."""
    pools = NegativePools()
    corpus = [r for r in rows if "term" in r.row and r.row.get("template") is not None]
    for built in corpus:
        row = built.row
        built.pool_index = pools.add(template_key(row["task"], row.get("variant", "")), row["document"],
                                     built.family, row["term"], row["messages"][1]["content"])
    pairs = []
    for built in corpus:
        row = built.row
        choice = pools.choose(built.pool_index, template_key(row["task"], row.get("variant", "")),
                              row["document"], built.family)
        if choice is None:
            stats.pairs_missing.add("no_hard_negative", f"{row['document']} clause {row['clause']}: {row['term']}"[:160])
            continue
        pair = _pair(row, corpus[choice.index].row, choice.pool)
        assert pair["chosen"] != pair["rejected"]
        pairs.append(pair)
        stats.pairs_by_task[row["task"]] += 1
        stats.pairs_by_pool[choice.pool] += 1
    return pairs


def inputs_payload(inputs: list[InputFile]) -> list[dict]:
    return [{"path": str(i.path.resolve()), "bytes": i.size, "sha256": i.sha256} for i in inputs]


def sidecar(config: BuildSFTConfig, stats: BuildStats, inputs: list[InputFile], extra: list[InputFile],
            rows: int, pairs: int) -> dict:
    """The JSON sidecar: inputs and their hashes, flags, counts per task / source / document, the
    templates' hash and use, rejections by reason with examples, pairs, throughput."""
    def bad(skipped: SkippedRecords) -> dict:
        return {"total": skipped.total, "by_reason": dict(sorted(skipped.counts.items())),
                "examples": skipped.examples}

    return {
        "tool": "megatron-telecom tools/build_sft_data.py", "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "flags": {k: v for k, v in flat_values(config).items() if k != "input"},
        "inputs": inputs_payload(inputs), "extra_sft": inputs_payload(extra),
        "records": {"read": stats.records, "by_source": dict(sorted(stats.records_by_source.items()))},
        "rows": {"written": rows, "by_task": dict(sorted(stats.rows_by_task.items())),
                 "by_source": dict(sorted(stats.rows_by_source.items())),
                 "by_task_and_source": {t: dict(sorted(c.items())) for t, c in sorted(stats.rows_by_task_and_source.items())},
                 "by_document": dict(sorted(stats.rows_by_document.items()))},
        "templates": {"sha256": templates_sha256(),
                      "use": {k: dict(sorted(c.items())) for k, c in sorted(stats.templates.items())}},
        "rejected": {**bad(stats.bad), "details": stats.bad_details},
        "pairs": {"output": config.dpo_output, "written": pairs, "by_task": dict(sorted(stats.pairs_by_task.items())),
                  "by_pool": dict(sorted(stats.pairs_by_pool.items())), "without_negative": bad(stats.pairs_missing)},
        "input_bytes": stats.input_bytes, "seconds": round(stats.seconds, 3), "cpu_seconds": round(stats.cpu_seconds, 3),
        "mb_per_cpu_second": round(stats.input_bytes / 1e6 / max(stats.cpu_seconds, 1e-9), 2),
    }


def build_sft_data(config: BuildSFTConfig) -> BuildStats:
    """Build, write the rows (and pairs) atomically, then the sidecar."""
    start, cpu_start = time.monotonic(), time.process_time()
    inputs = resolve_inputs(config.input)
    stats = BuildStats()
    rows = corpus_rows(config, inputs, stats)
    pairs = preference_pairs(rows, stats) if config.dpo_output else []
    extra, extra_files = extra_rows(config.extra_sft, stats)
    rows += extra
    for built in rows:
        stats.count_row(built.row)
    write_jsonl(config.output, [r.row for r in rows])
    if config.dpo_output:
        write_jsonl(config.dpo_output, pairs)
    stats.input_bytes = sum(i.size for i in inputs)
    stats.seconds, stats.cpu_seconds = time.monotonic() - start, time.process_time() - cpu_start
    atomic_write_json(config.report_path, sidecar(config, stats, inputs, extra_files, len(rows), len(pairs)))
    return stats


def summary(config: BuildSFTConfig, stats: BuildStats) -> str:
    """What the tool prints: rows per task and source, pairs, rejections by reason."""
    mb = stats.input_bytes / 1e6
    lines = [f"Done: {stats.records:,} records ({mb:,.1f} MB) -> {sum(stats.rows_by_task.values()):,} rows in "
             f"{stats.seconds:.1f} s ({mb / max(stats.cpu_seconds, 1e-9):,.1f} MB per CPU-second)"]
    lines += [f"  {task}: {count:,} rows ({', '.join(f'{s} {n:,}' for s, n in sorted(stats.rows_by_task_and_source[task].items()))})"
              for task, count in sorted(stats.rows_by_task.items())]
    lines.append(f"  written to {config.output}")
    if config.dpo_output:
        lines.append(f"  {sum(stats.pairs_by_task.values()):,} preference pairs to {config.dpo_output} "
                     f"({stats.pairs_missing.total:,} rows without a hard negative)")
    lines.append(f"  sidecar: {config.report_path}")
    return "\n".join(lines + refusal_lines(stats.bad))


def run_build_sft_data(config: BuildSFTConfig) -> int:
    """`tools/build_sft_data.py`: build, write, print the summary."""
    print(summary(config, build_sft_data(config)))
    return 0
