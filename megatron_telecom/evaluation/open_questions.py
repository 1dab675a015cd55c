"""The generic open-ended record (prompt, references, category, system), its JSONL format, and
TeleQnA-open, our open-ended derivative of TeleQnA.

Generic JSONL (one object per line): ``{"prompt": str, "references": [str, ...], "category": str,
"system": str}``; ``references`` (one or more non-empty strings; a single string is taken as one)
is what an answer is scored against; ``category`` is optional (default ``all``), ``system`` is
optional (a system message, used with ``--chat`` only); an optional ``id`` names the record
(default ``<file name>:<line>``). A line that cannot be scored is counted by reason
(``not_utf8``, ``not_json``, ``not_an_object``, ``missing_prompt``, ``missing_references``,
``bad_references``, ``bad_category``, ``bad_system``) and skipped, never fatal.

TeleQnA-open (``teleqna_open``) is *our* derivative, not the TelecomGPT paper's Open QnA (whose
data is not public): each TeleQnA question asked without its options as ``Question: {question}
\\nAnswer:``, the correct option's text as the first reference and the question's explanation,
where it has one, as the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from megatron_telecom.evaluation.questions import DEFAULT_CATEGORY, QuestionSet, read_jsonl_file

TELEQNA_OPEN_PROMPT = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class OpenQuestion:
    """One open-ended question: the prompt to complete (or answer, with ``--chat``) and its references."""

    id: str
    prompt: str
    references: tuple[str, ...]
    category: str = DEFAULT_CATEGORY
    system: str = ""
    """A system message for ``--chat`` (empty: none)."""


def _parse_open(record: object, record_id: str) -> OpenQuestion | str:
    """An OpenQuestion from one generic JSONL object, or the reason it cannot be scored."""
    if not isinstance(record, dict):
        return "not_an_object"
    prompt, references = record.get("prompt"), record.get("references")
    category, system = record.get("category", DEFAULT_CATEGORY), record.get("system", "")
    if not isinstance(prompt, str) or not prompt.strip():
        return "missing_prompt"
    if isinstance(references, str):
        references = [references]
    if references is None or references == []:
        return "missing_references"
    if not isinstance(references, list) or not all(isinstance(r, str) and r.strip() for r in references):
        return "bad_references"
    if not isinstance(category, str) or not category.strip():
        return "bad_category"
    if not isinstance(system, str):
        return "bad_system"
    return OpenQuestion(str(record.get("id", record_id)), prompt, tuple(r.strip() for r in references),
                        category.strip(), system)


def read_open_jsonl(path: str | Path) -> QuestionSet:
    """Every scorable record of a generic open-ended JSONL file (``questions`` holds OpenQuestions);
    bad lines counted by reason, not fatal."""
    return read_jsonl_file(path, _parse_open, '{"prompt", "references": [...], "category", "system"}')


def teleqna_open(questions: QuestionSet) -> QuestionSet:
    """TeleQnA-open: the multiple-choice questions asked without options (see the module docstring)."""
    records = [OpenQuestion(q.id, TELEQNA_OPEN_PROMPT.format(question=q.question),
                            (q.options[q.gold], q.explanation) if q.explanation else (q.options[q.gold],), q.category)
               for q in questions.questions]
    return QuestionSet(records, dict(questions.malformed), dict(questions.malformed_examples))


def open_record(question: OpenQuestion) -> dict:
    """The generic JSONL object of an open question (what ``read_open_jsonl`` reads back)."""
    record = {"id": question.id, "prompt": question.prompt, "references": list(question.references),
              "category": question.category}
    return {**record, "system": question.system} if question.system else record
