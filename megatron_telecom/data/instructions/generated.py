"""Model-written question-answer pairs about clauses, kept only when grounded in the clause.

A generator reads one clause (a section of a curated 3GPP clause document or RFC, at least
``--min-clause-words`` words, cut at a paragraph to ``--max-clause-chars``) and writes
``Q: ... / A: ...`` pairs. It is either any ``--model`` source (HF folder, ``bundled:NAME``,
megatron checkpoint) through our generation code (`evaluation/generation.py`, chat template when
the tokenizer has one), or an OpenAI-compatible server (vLLM, TGI, llama.cpp) at ``--endpoint``:
``POST {endpoint}/v1/chat/completions``, stdlib HTTP, nothing leaves for a third party unless the
team points it there.

A pair is kept only when:
- **grounded**: at least ``--min-overlap`` (default 0.8) of the answer's word tokens (lower-cased
  runs of letters and digits, counted with repetition) occur in the clause given to the generator;
- **new**: its question, normalised to its word tokens, was not kept before (any clause);
- **within length limits**: question and answer word counts inside their bounds;
- **a question with an answer**: the question ends with '?' and the answer brings at least two
  word tokens the question does not hold (small models restate the question as its answer).
Every other pair is counted by reason. Each row records the generator's identity (kind, model
name the server reports or the model source, sampling settings), the clause and the overlap.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from megatron_telecom.arguments import flat_values
from megatron_telecom.atomic import atomic_write_json
from megatron_telecom.data.instructions.builder import BuildStats, curated_records, inputs_payload
from megatron_telecom.data.instructions.vocabulary import (
    Section,
    collapse,
    document_name,
    markdown_record_sections,
    rfc_sections,
)
from megatron_telecom.data.jsonl_input import resolve_inputs
from megatron_telecom.data.preprocess import SkippedRecords
from megatron_telecom.data.sft import refusal_lines
from megatron_telecom.jsonl import write_jsonl
from megatron_telecom.version import __version__

TASK = "generated_qa"
_TOKEN = re.compile(r"[a-z0-9]+")
_PAIR = re.compile(r"^\W*(?:\d+[.)]\s*)?(?:Q|Question)\s*\d*\s*[:.]\s*(?P<q>.+?)\s*\n+\W*(?:A|Answer)\s*\d*\s*[:.]\s*"
                   r"(?P<a>.+?)\s*(?=\n\W*(?:\d+[.)]\s*)?(?:Q|Question)\s*\d*\s*[:.]|\Z)", re.M | re.S | re.I)
_ENUMERATION = re.compile(r"^\d+[.)]\s+")
PROMPT = ("Read the following text from {doc}, clause {clause}.\n\n{text}\n\n"
          "Write {pairs} question-answer pairs about facts stated in this text. Copy each answer from "
          "the text as closely as you can. Write each pair as two lines:\nQ: <question>\nA: <answer>")


@dataclass(frozen=True, kw_only=True)
class GenerateQAConfig:
    """Flags of `tools/generate_qa.py`."""

    input: list[str]
    """Curated JSONL files or globs (tools/curate_corpus.py output)."""
    output: str
    """SFT JSONL of the kept pairs (task generated_qa, with clause, overlap and generator)."""
    model: str | None = None
    """Generator: HF folder, bundled:NAME or megatron checkpoint (our generation code)."""
    endpoint: str | None = None
    """Generator: base URL of an OpenAI-compatible server (POST {endpoint}/v1/chat/completions)."""
    endpoint_model: str = "default"
    """The "model" field sent to --endpoint."""
    pairs_per_clause: int = 3
    """Pairs asked for per clause."""
    max_clauses: int = 0
    """Clauses sent to the generator, drawn by --seed from all eligible ones (0: every one, in order)."""
    min_clause_words: int = 60
    """Sections with fewer words are not sent."""
    max_clause_chars: int = 4000
    """Longer sections are cut at the last paragraph end before this many characters."""
    min_overlap: float = 0.8
    """Share of the answer's word tokens that must occur in the clause (grounding)."""
    question_words: tuple[int, ...] = (4, 60)
    """Minimum and maximum words of a kept question."""
    answer_words: tuple[int, ...] = (1, 120)
    """Minimum and maximum words of a kept answer."""
    max_new_tokens: int = 512
    """Tokens the generator may write per clause."""
    temperature: float = 0.0
    """0: greedy."""
    seed: int = 1234
    """Seeds the choice of clauses and the generator's sampling."""
    timeout: float = 300.0
    """Seconds to wait for one --endpoint answer."""
    report: str | None = None
    """JSON sidecar (None: <output without .jsonl>.generate.json)."""

    def __post_init__(self) -> None:
        if (self.model is None) == (self.endpoint is None):
            raise ValueError("give exactly one generator: --model SOURCE or --endpoint URL")
        if not 0 <= self.min_overlap <= 1:
            raise ValueError(f"--min-overlap {self.min_overlap}: give a share between 0 and 1")
        for flag, bounds in (("--question-words", self.question_words), ("--answer-words", self.answer_words)):
            if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1]:
                raise ValueError(f"{flag} {' '.join(map(str, bounds))}: give MIN MAX with 0 <= MIN <= MAX")
        if self.pairs_per_clause < 1 or self.max_new_tokens < 1:
            raise ValueError("--pairs-per-clause and --max-new-tokens must be >= 1")

    @property
    def report_path(self) -> Path:
        out = Path(self.output)
        return Path(self.report) if self.report else out.with_name(out.name.removesuffix(".jsonl") + ".generate.json")


class Generator(Protocol):
    """Writes text for a prompt; ``identity`` is recorded with every row it wrote."""

    identity: dict[str, Any]

    def __call__(self, prompt: str) -> str: ...


class EndpointGenerator:
    """An OpenAI-compatible chat completions server (vLLM, TGI, llama.cpp server), stdlib HTTP."""

    def __init__(self, config: GenerateQAConfig) -> None:
        self.url = config.endpoint.rstrip("/") + "/v1/chat/completions"
        self.config = config
        self.identity = {"kind": "openai-compatible endpoint", "url": self.url, "requested_model": config.endpoint_model,
                         "temperature": config.temperature, "seed": config.seed, "max_tokens": config.max_new_tokens}

    def __call__(self, prompt: str) -> str:
        body = {"model": self.config.endpoint_model, "messages": [{"role": "user", "content": prompt}],
                "temperature": self.config.temperature, "max_tokens": self.config.max_new_tokens,
                "seed": self.config.seed}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.config.timeout) as response:  # noqa: S310 - the team's URL
            answer = json.loads(response.read().decode("utf-8"))
        self.identity.setdefault("model", answer.get("model"))
        return answer["choices"][0]["message"]["content"]


class ModelGenerator:
    """Any ``--model`` source through `evaluation.generation.generate` (chat template when it has one)."""

    def __init__(self, config: GenerateQAConfig) -> None:
        from megatron_telecom.evaluation.model_source import load_model

        self.model = load_model(config.model)
        self.config = config
        self.chat = bool(getattr(self.model.tokenizer, "chat_template", None))
        self.identity = {"kind": "model", "model": config.model, "hf_path": str(self.model.hf_path), "chat": self.chat,
                         "temperature": config.temperature, "seed": config.seed, "max_new_tokens": config.max_new_tokens}

    def __call__(self, prompt: str) -> str:
        from megatron_telecom.evaluation.generation import generate

        return generate(self.model, prompt, max_new_tokens=self.config.max_new_tokens,
                        temperature=self.config.temperature, seed=self.config.seed, stream=None, chat=self.chat)


@dataclass(frozen=True)
class Clause:
    """A section sent to the generator, with what its rows record."""

    record: dict
    clause: str
    text: str


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    end = text.rfind("\n\n", 0, max_chars)
    return text[:end if end > 0 else max_chars].rstrip()


def clauses(records: list[dict], config: GenerateQAConfig) -> list[Clause]:
    """Eligible sections of the records, in order, or ``--max-clauses`` of them drawn by the seed."""
    found = []
    for record in records:
        source = record.get("source")
        sections: list[Section] = markdown_record_sections(record) if source == "3gpp" else \
            rfc_sections(record["text"]) if source == "rfc" else [Section("", "", record["text"].split("\n"))]
        for section in sections:
            text = _cut("\n".join(section.lines).strip(), config.max_clause_chars)
            if len(text.split()) >= config.min_clause_words:
                found.append(Clause(record, section.clause or section.title, text))
    if config.max_clauses and len(found) > config.max_clauses:
        chosen = sorted(random.Random(config.seed).sample(range(len(found)), config.max_clauses))
        found = [found[i] for i in chosen]
    return found


def tokens(text: str) -> list[str]:
    """Word tokens grounding is measured on: lower-cased runs of ASCII letters and digits."""
    return _TOKEN.findall(text.lower())


def overlap(answer: str, clause: str) -> float:
    """Share of the answer's tokens (with repetition) that occur in the clause."""
    words = tokens(answer)
    vocabulary = set(tokens(clause))
    return sum(w in vocabulary for w in words) / len(words) if words else 0.0


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of a generator's ``Q: ... / A: ...`` output, in order (a leading
    '1.' that small models write inside the line is dropped)."""
    return [(_ENUMERATION.sub("", collapse(m.group("q"))), _ENUMERATION.sub("", collapse(m.group("a"))))
            for m in _PAIR.finditer(text)]


def judge(question: str, answer: str, clause: str, seen: set[str], config: GenerateQAConfig) -> tuple[str | None, float]:
    """(None, overlap) for a pair to keep, else (reason, overlap)."""
    q_words, a_words = len(question.split()), len(answer.split())
    if not config.question_words[0] <= q_words <= config.question_words[1]:
        return ("question_too_short" if q_words < config.question_words[0] else "question_too_long"), 0.0
    if not config.answer_words[0] <= a_words <= config.answer_words[1]:
        return ("answer_too_short" if a_words < config.answer_words[0] else "answer_too_long"), 0.0
    if not question.endswith("?"):
        return "not_a_question", 0.0
    if len(set(tokens(answer)) - set(tokens(question))) < 2:
        return "answer_repeats_question", 0.0
    share = overlap(answer, clause)
    if share < config.min_overlap:
        return "not_grounded", share
    if " ".join(tokens(question)) in seen:
        return "duplicate", share
    return None, share


@dataclass
class GenerateStats:
    """Counts for the sidecar and the summary."""

    clauses: int = 0
    pairs_proposed: int = 0
    rows: int = 0
    rejected: SkippedRecords = field(default_factory=SkippedRecords)
    rejected_examples: dict[str, list[dict]] = field(default_factory=dict)
    seconds: float = 0.0


def _reject(stats: GenerateStats, reason: str, where: str, example: dict) -> None:
    stats.rejected.add(reason, where)
    shown = stats.rejected_examples.setdefault(reason, [])
    if len(shown) < 3:
        shown.append(example)


def generate_rows(items: list[Clause], generator: Generator, config: GenerateQAConfig, stats: GenerateStats) -> list[dict]:
    """Ask the generator about each clause; keep the grounded, new pairs within the limits."""
    rows, seen = [], set()
    for number, item in enumerate(items):
        doc = document_name(item.record) or str(item.record.get("doc_id") or item.record.get("id"))
        where = f"{item.record.get('id', doc)} clause {item.clause}"
        try:
            output = generator(PROMPT.format(doc=doc, clause=item.clause, text=item.text, pairs=config.pairs_per_clause))
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
            if number == 0 and not rows:  # the generator does not work at all: one clear line
                raise ValueError(f"the generator failed on the first clause ({where}): {exc}") from None
            _reject(stats, "generator_error", where, {"error": str(exc)[:200]})
            continue
        stats.clauses += 1
        pairs = parse_pairs(output)
        if not pairs:
            _reject(stats, "unparsable_output", where, {"output": output[:300]})
        for question, answer in pairs:
            stats.pairs_proposed += 1
            reason, share = judge(question, answer, item.text, seen, config)
            if reason:
                _reject(stats, reason, where, {"question": question[:200], "answer": answer[:200],
                                               "overlap": round(share, 3)})
                continue
            seen.add(" ".join(tokens(question)))
            rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                         "task": TASK, "source": item.record.get("source"), "doc_id": item.record.get("doc_id"),
                         "document": doc, "clause": item.clause, "record_id": item.record.get("id"),
                         "overlap": round(share, 4), "generator": generator.identity})
    return rows


def generate_qa(config: GenerateQAConfig, generator: Generator | None = None) -> GenerateStats:
    """Read the corpus, generate, filter, write the rows and the sidecar (atomically)."""
    start = time.monotonic()
    inputs = resolve_inputs(config.input)
    build_stats = BuildStats()
    items = clauses(list(curated_records(inputs, build_stats)), config)
    generator = generator or (EndpointGenerator(config) if config.endpoint else ModelGenerator(config))
    stats = GenerateStats()
    rows = generate_rows(items, generator, config, stats)
    stats.rows, stats.seconds = len(rows), time.monotonic() - start
    write_jsonl(config.output, rows)
    atomic_write_json(config.report_path, {
        "tool": "megatron-telecom tools/generate_qa.py", "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "flags": {k: v for k, v in flat_values(config).items() if k != "input"},
        "inputs": inputs_payload(inputs), "generator": generator.identity, "prompt": PROMPT,
        "grounding": {"min_overlap": config.min_overlap, "tokens": "lower-cased [a-z0-9]+ runs, with repetition"},
        "clauses": {"eligible": len(items), "answered": stats.clauses},
        "pairs": {"proposed": stats.pairs_proposed, "kept": stats.rows},
        "rejected": {"total": stats.rejected.total, "by_reason": dict(sorted(stats.rejected.counts.items())),
                     "where": stats.rejected.examples, "examples": stats.rejected_examples},
        "bad_input_lines": build_stats.bad.counts, "seconds": round(stats.seconds, 3),
    })
    return stats


def run_generate_qa(config: GenerateQAConfig) -> int:
    """`tools/generate_qa.py`: generate and print the summary."""
    stats = generate_qa(config)
    lines = [f"Done: {stats.clauses:,} clauses, {stats.pairs_proposed:,} pairs proposed, {stats.rows:,} kept "
             f"in {stats.seconds:.1f} s -> {config.output}"]
    lines.append(f"  sidecar: {config.report_path}")
    print("\n".join(lines + refusal_lines(stats.rejected)))
    return 0
