"""The generic multiple-choice record every benchmark is read into, its JSONL format, and prompts.

A ``Question`` is (id, question, choices, gold index, category). TeleQnA (``teleqna.py``),
ORAN-Bench-13K (``oranbench.py``) and a team's own exam in the generic JSONL format below are
readers into it, so sampling, prompts, scoring and baselines are written once.

Generic JSONL (one object per line): ``{"question": str, "choices": [str, ...], "answer": int,
"category": str}`` with ``answer`` the 0-based index of the correct choice, 2 to 26 choices (A-Z), and
``category`` optional (default ``all``); an optional ``id`` names the question (default:
``<file name>:<line>``); an optional ``explanation`` (string) is kept for decontamination. A line that cannot be scored is counted by reason and skipped, never fatal.

Decisions: texts are stripped of surrounding whitespace; ``--limit N`` takes from every category
its share of N (largest remainder), each category in a fixed pseudo-random order (sha256 of the
question id), so a sample is the same on every machine; few-shot examples come from a fixed pool:
the last ``K + 1`` questions of each category in that order (a ``--limit`` sample takes the first
ones), the question itself excluded, so shots are of the same category and never the evaluated one.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_CHOICES = len(LETTERS)
DEFAULT_CATEGORY = "all"

PROMPT_TEMPLATES = {
    "options": {
        "context": "Question: {question}\nAnswer:",
        "continuation": " {option}",
        "shot": "Question: {question}\nAnswer: {gold_option}\n\n",
    },
    "letter": {
        "context": "Question: {question}\n{A. option, one per line}\nAnswer:",
        "continuation": " {letter}",
        "shot": "Question: {question}\n{A. option, one per line}\nAnswer: {gold_letter}\n\n",
    },
}


@dataclass(frozen=True)
class Question:
    """One scorable multiple-choice question; ``gold`` indexes ``options`` (0-based)."""

    id: str
    question: str
    options: tuple[str, ...]
    gold: int
    category: str
    explanation: str = ""
    """Why the gold choice is right, where the benchmark gives it (TeleQnA): checked by decontamination."""


@dataclass
class QuestionSet:
    """The valid questions of a file and the skipped records counted by reason (with a few ids)."""

    questions: list[Question]
    malformed: dict[str, int] = field(default_factory=dict)
    malformed_examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, record_id: str) -> None:
        """Count one unscorable record under ``reason`` (the first five ids are kept as examples)."""
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        examples = self.malformed_examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(record_id)


def _parse_generic(record: object, record_id: str) -> Question | str:
    """A Question from one generic JSONL object, or the reason it cannot be scored."""
    if not isinstance(record, dict):
        return "not_an_object"
    question, choices, answer = record.get("question"), record.get("choices"), record.get("answer")
    category = record.get("category", DEFAULT_CATEGORY)
    if not isinstance(question, str) or not question.strip():
        return "missing_question"
    if (not isinstance(choices, list) or not 2 <= len(choices) <= MAX_CHOICES
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        return "bad_choices"
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return "bad_answer"
    if not isinstance(category, str) or not category.strip():
        return "bad_category"
    explanation = record.get("explanation", "")
    if not isinstance(explanation, str):
        return "bad_explanation"
    qid = record.get("id", record_id)
    return Question(str(qid), question.strip(), tuple(c.strip() for c in choices), answer, category.strip(),
                    explanation.strip())


def read_jsonl_records(data: QuestionSet, path: Path, prefix: str, parse: Callable[[object, str], object]) -> None:
    """Add every line of a JSON Lines file to ``data`` (``parse``: a record, or the reason (str) it is
    skipped; ids ``<prefix>:<line>``); blank lines are ignored, unreadable ones counted ``not_utf8``
    or ``not_json``."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            record_id = f"{prefix}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                data.skip("not_utf8", record_id)
                continue
            if not line.strip():
                continue
            try:
                parsed = parse(json.loads(line), record_id)
            except json.JSONDecodeError:
                parsed = "not_json"
            if isinstance(parsed, str):
                data.skip(parsed, record_id)
            else:
                data.questions.append(parsed)


def read_jsonl_file(path: str | Path, parse: Callable[[object, str], object], expected: str) -> QuestionSet:
    """Every scorable record of a ``--data`` JSONL file (``expected``: its objects' keys, for the
    error); bad lines counted, not fatal; a file without any scorable record is refused."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file; give a JSONL of {expected} objects")
    data = QuestionSet(questions=[])
    read_jsonl_records(data, path, path.name, parse)
    if not data.questions:
        raise ValueError(f"--data {path}: no scorable question (skipped: {data.malformed})")
    return data


def read_questions_jsonl(path: str | Path) -> QuestionSet:
    """Every scorable question of a generic multiple-choice JSONL file; bad lines counted, not fatal."""
    return read_jsonl_file(path, _parse_generic, '{"question", "choices", "answer" (0-based), "category"}')


def question_record(question: Question) -> dict:
    """The generic JSONL object of a question (what ``read_questions_jsonl`` reads back)."""
    record = {"id": question.id, "question": question.question, "choices": list(question.options),
              "answer": question.gold, "category": question.category}
    return {**record, "explanation": question.explanation} if question.explanation else record


def _order_key(question: Question) -> str:
    return hashlib.sha256(question.id.encode()).hexdigest()


def by_category(questions: list[Question]) -> dict[str, list[Question]]:
    """Questions per category, each in the fixed sha256-of-id order."""
    groups: dict[str, list[Question]] = defaultdict(list)
    for question in sorted(questions, key=_order_key):
        groups[question.category].append(question)
    return dict(sorted(groups.items()))


def stratified_sample(questions: list[Question], limit: int | None) -> list[Question]:
    """Deterministic category-stratified sample of ``limit`` questions (all when None)."""
    if limit is not None and limit <= 0:
        raise ValueError(f"--limit {limit}: give a positive number of questions")
    if limit is None or limit >= len(questions):
        return sorted(questions, key=_order_key)
    groups = by_category(questions)
    quotas = {c: limit * len(g) / len(questions) for c, g in groups.items()}
    counts = {c: int(q) for c, q in quotas.items()}
    by_remainder = sorted(groups, key=lambda c: (-(quotas[c] - counts[c]), c))
    for category in by_remainder[: limit - sum(counts.values())]:
        counts[category] += 1
    chosen = [q for c, g in groups.items() for q in g[: counts[c]]]
    return sorted(chosen, key=_order_key)


def shot_pool(questions: list[Question], shots: int) -> dict[str, list[Question]]:
    """The fixed few-shot pool: the last ``shots + 1`` questions of each category."""
    return {c: g[-(shots + 1):] for c, g in by_category(questions).items()} if shots else {}


def shots_for(question: Question, pool: dict[str, list[Question]], shots: int) -> list[Question]:
    """``shots`` pool questions of the same category, never ``question`` itself."""
    return [q for q in pool.get(question.category, []) if q.id != question.id][:shots]


def _listed(question: Question) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(question.options))


def build_prompt(question: Question, mode: str, examples: list[Question]) -> tuple[str, list[str], list[str]]:
    """Context, the continuations to score, and the choice texts whose lengths acc_norm divides by."""
    if mode == "options":
        shots = "".join(f"Question: {q.question}\nAnswer: {q.options[q.gold]}\n\n" for q in examples)
        context = f"{shots}Question: {question.question}\nAnswer:"
        return context, [f" {text}" for text in question.options], list(question.options)
    if mode == "letter":
        shots = "".join(f"Question: {q.question}\n{_listed(q)}\nAnswer: {LETTERS[q.gold]}\n\n" for q in examples)
        context = f"{shots}Question: {question.question}\n{_listed(question)}\nAnswer:"
        letters = list(LETTERS[: len(question.options)])
        return context, [f" {letter}" for letter in letters], letters
    raise ValueError(f"--mode {mode}: choose options or letter")


def category_counts(questions: list[Question]) -> dict[str, int]:
    """How many questions each category has."""
    return dict(sorted(Counter(q.category for q in questions).items()))
