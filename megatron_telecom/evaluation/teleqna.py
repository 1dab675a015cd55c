"""TeleQnA: reading the authors' AES zip or JSON, stratified samples, few-shot pool and prompts.

Format (Maatouk et al., 2023): a JSON object ``{"question N": {"question", "option 1".."option 5",
"answer": "option K: text", "explanation", "category"}}`` with 2 to 5 options. The gold option is
taken from the *number* K in ``answer`` (its text sometimes differs from option K's). A record
that cannot be scored (not an object, no question, fewer than 2 options or a gap in their numbers,
no valid option number in ``answer``, no category) is counted by reason and skipped.

Decisions: question and option texts are stripped of surrounding whitespace; ``--limit N`` takes
from every category its share of N (largest remainder), each category in a fixed pseudo-random
order (sha256 of the question id), so a sample is the same on every machine and a larger limit
contains a smaller one's questions; few-shot examples come from a fixed pool: the last ``K + 1``
questions of each category in that order (a ``--limit`` sample takes the first ones), the question
itself excluded, so shots are of the same category and never the evaluated question.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TELEQNA_ZIP_PASSWORD = b"teleqnadataset"  # published by the dataset's authors
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "teleqna" / "TeleQnA.zip"
MAX_OPTIONS = 5
LETTERS = "ABCDE"
ANSWER_NUMBER = re.compile(r"^\s*option\s*(\d+)\s*(?::|$)", re.IGNORECASE)

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
    """One scorable TeleQnA question; ``gold`` indexes ``options`` (0-based)."""

    id: str
    question: str
    options: tuple[str, ...]
    gold: int
    category: str


@dataclass
class TeleQnAData:
    """The valid questions of a file and the skipped records counted by reason."""

    questions: list[Question]
    malformed: dict[str, int] = field(default_factory=dict)
    malformed_examples: dict[str, list[str]] = field(default_factory=dict)


def _read_text(path: Path) -> str:
    """The JSON text of a TeleQnA zip (AES, the authors' password) or JSON file."""
    if not path.is_file():
        raise ValueError(f"TeleQnA data {path} not found; pass --data with the TeleQnA.zip or a JSON "
                         f"file in its format")
    if path.suffix != ".zip":
        return path.read_text(encoding="utf-8")
    import pyzipper

    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(TELEQNA_ZIP_PASSWORD)
        members = [n for n in archive.namelist() if n.endswith((".txt", ".json"))]
        if len(members) != 1:
            raise ValueError(f"{path}: expected one .txt/.json member, found {archive.namelist()}")
        return archive.read(members[0]).decode("utf-8")


def _parse_record(key: str, record: object) -> Question | str:
    """A Question, or the reason the record is malformed."""
    if not isinstance(record, dict):
        return "not_an_object"
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        return "missing_question"
    options = []
    for number in range(1, MAX_OPTIONS + 1):
        text = record.get(f"option {number}")
        if text is None:
            break
        if not isinstance(text, str) or not text.strip():
            return "bad_option"
        options.append(text.strip())
    extra = [k for k in record if k.startswith("option ") and k not in {f"option {i}" for i in range(1, len(options) + 1)}]
    if len(options) < 2 or extra:
        return "bad_options"
    match = ANSWER_NUMBER.match(record.get("answer", "")) if isinstance(record.get("answer"), str) else None
    if match is None or not 1 <= int(match.group(1)) <= len(options):
        return "bad_answer"
    category = record.get("category")
    if not isinstance(category, str) or not category.strip():
        return "missing_category"
    return Question(key, question.strip(), tuple(options), int(match.group(1)) - 1, category.strip())


def read_teleqna(path: str | Path) -> TeleQnAData:
    """All questions of a TeleQnA zip or JSON file; malformed records counted, never fatal."""
    path = Path(path)
    try:
        records = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error}); expected the TeleQnA format") from error
    if not isinstance(records, dict):
        raise ValueError(f"{path}: expected a JSON object of questions keyed by id, got {type(records).__name__}")
    data = TeleQnAData(questions=[])
    examples: dict[str, list[str]] = defaultdict(list)
    for key, record in records.items():
        parsed = _parse_record(str(key), record)
        if isinstance(parsed, Question):
            data.questions.append(parsed)
        else:
            data.malformed[parsed] = data.malformed.get(parsed, 0) + 1
            examples[parsed].append(str(key))
    data.malformed_examples = {reason: ids[:5] for reason, ids in examples.items()}
    return data


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
