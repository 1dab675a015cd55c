"""TeleQnA: reading the authors' AES zip or JSON into the generic ``questions.Question`` record.

Format (Maatouk et al., 2023): a JSON object ``{"question N": {"question", "option 1".."option 5",
"answer": "option K: text", "explanation", "category"}}`` with 2 to 5 options. The gold option is
taken from the *number* K in ``answer`` (its text sometimes differs from option K's). A record
that cannot be scored (not an object, no question, fewer than 2 options or a gap in their numbers,
no valid option number in ``answer``, no category) is counted by reason and skipped. Sampling,
shots and prompts are the generic ones of ``questions.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from megatron_telecom.evaluation.questions import Question, QuestionSet

TELEQNA_ZIP_PASSWORD = b"teleqnadataset"  # published by the dataset's authors
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "teleqna" / "TeleQnA.zip"
MAX_OPTIONS = 5
ANSWER_NUMBER = re.compile(r"^\s*option\s*(\d+)\s*(?::|$)", re.IGNORECASE)


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
    explanation = record.get("explanation")
    explanation = explanation.strip() if isinstance(explanation, str) else ""
    return Question(key, question.strip(), tuple(options), int(match.group(1)) - 1, category.strip(), explanation)


def read_teleqna(path: str | Path) -> QuestionSet:
    """All questions of a TeleQnA zip or JSON file; malformed records counted, never fatal."""
    path = Path(path)
    try:
        records = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error}); expected the TeleQnA format") from error
    if not isinstance(records, dict):
        raise ValueError(f"{path}: expected a JSON object of questions keyed by id, got {type(records).__name__}")
    data = QuestionSet(questions=[])
    for key, record in records.items():
        parsed = _parse_record(str(key), record)
        if isinstance(parsed, Question):
            data.questions.append(parsed)
        else:
            data.skip(parsed, str(key))
    return data
