"""ORAN-Bench-13K (Gajjar and Shah, 2024; MIT): reading ``fin_E/M/H.json`` into generic questions.

Format: each file is JSON Lines, one ``[question, ["1. text", "2. text", ...], "K"]`` per line,
K counted from 1; the file's difficulty (easy, medium, hard) is the question's category and its
id is ``fin_E:<line>``. The benchmark asks four options per question. A row that cannot be scored
as such is counted by reason and skipped, never fatal; the published files hold such rows:
``no_options`` (an empty option list), ``option_count_N`` (3, 5 or 6 options), and
``answer_outside_options``; also ``not_json``, ``not_a_row``, ``missing_question``,
``bad_numbering`` (option K not numbered ``K.``) and ``bad_answer`` (K not a number).

Decision on the numbering: the ``K. `` prefix inside every option is the benchmark's list
markup, not part of the answer, so the reader strips it. In ``options`` mode the continuation is
the option text alone (the number would add the same-shape tokens to every choice and a position
bias the answer key is skewed by); in ``letter`` mode the options are relabelled ``A.``-``D.``
exactly like TeleQnA's, and the model answers with the letter.
"""

from __future__ import annotations

import re
from pathlib import Path

from megatron_telecom.evaluation.questions import Question, QuestionSet, read_jsonl_records

DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oranbench"
FILES = {"easy": "fin_E.json", "medium": "fin_M.json", "hard": "fin_H.json"}
NUM_OPTIONS = 4
NUMBERED = re.compile(r"^\s*(\d+)\.\s+(.*)$", re.DOTALL)


def _parse_row(row: object, record_id: str, category: str) -> Question | str:
    """A Question from one ORAN-Bench row, or the reason it cannot be scored."""
    if not isinstance(row, list) or len(row) != 3 or not isinstance(row[1], list):
        return "not_a_row"
    question, options, answer = row
    if not isinstance(question, str) or not question.strip():
        return "missing_question"
    if not options:
        return "no_options"
    if len(options) != NUM_OPTIONS:
        return f"option_count_{len(options)}"
    texts = []
    for number, option in enumerate(options, 1):
        match = NUMBERED.match(option) if isinstance(option, str) else None
        if match is None or int(match.group(1)) != number or not match.group(2).strip():
            return "bad_numbering"
        texts.append(match.group(2).strip())
    if not isinstance(answer, str | int) or not str(answer).strip().isdigit():
        return "bad_answer"
    if not 1 <= int(answer) <= len(texts):
        return "answer_outside_options"
    return Question(record_id, question.strip(), tuple(texts), int(answer) - 1, category)


def read_oranbench(folder: str | Path | None = None) -> QuestionSet:
    """Every scorable question of ``fin_E/M/H.json`` in ``folder``; malformed rows counted by reason."""
    folder = Path(folder) if folder else DEFAULT_DIR
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"ORAN-Bench data: {', '.join(missing)} not found in {folder}; pass --data with "
                         f"the folder holding fin_E.json, fin_M.json and fin_H.json")
    data = QuestionSet(questions=[])
    for category, name in FILES.items():
        read_jsonl_records(data, folder / name, Path(name).stem,
                           lambda row, record_id, category=category: _parse_row(row, record_id, category))
    return data
