"""GSMA Open Telco's ``3gpp_tsg`` task (Tdoc working-group classification) read into ``Question``s.

Layout (GSMA/ot_sample_data config ``3gpp_tsg``, GSMA/ot-lite, ot-full: ``test_3gpp_tsg.json``, a JSON
array, or the same objects one per line): ``question`` is a chat prompt that lists the 16 labels
(``{'CT1', ..., 'SA6'}``) and wraps the text as ``###TEXT:\\n{...}``; ``answer`` is the bare label;
``file_name`` the Tdoc (``S4-230942.txt``). We keep the text, ask it with our working-group question
(``wg_benchmark.QUESTION_TEMPLATE``) and score it by log-likelihood over the 16 labels, as our
spec-text benchmark. The category is the gold label, so per-category accuracy is per-class recall.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from megatron_telecom.data.wg_benchmark import wg_question
from megatron_telecom.data.working_groups import GSMA_CLASSES
from megatron_telecom.evaluation.questions import Question, QuestionSet, read_jsonl_records

_TEXT = re.compile(r"###TEXT:\s*\{(.*)\}\s*$", re.S)
_LABELS = re.compile(r"\{('[A-Z0-9_]+'(?:,\s*'[A-Z0-9_]+')+)\}")


def parse_3gpp_tsg(record: object, record_id: str) -> Question | str:
    """A Question from one ``3gpp_tsg`` object, or the reason it cannot be scored."""
    if not isinstance(record, dict):
        return "not_an_object"
    prompt, answer = record.get("question"), record.get("answer")
    if not isinstance(prompt, str) or not (match := _TEXT.search(prompt)) or not match.group(1).strip():
        return "missing_text"
    labels = _LABELS.search(prompt[:match.start()])
    classes = sorted((x.strip(" '") for x in labels.group(1).split(",")), key=_class_order) if labels else \
        list(GSMA_CLASSES)
    if not isinstance(answer, str) or answer.strip() not in classes:
        return "answer_not_a_label"
    name = record.get("file_name")
    qid = name if isinstance(name, str) and name else record_id
    return wg_question(qid, " ".join(match.group(1).split()), classes, answer.strip())


def _class_order(label: str) -> tuple[int, str]:
    return (GSMA_CLASSES.index(label), label) if label in GSMA_CLASSES else (len(GSMA_CLASSES), label)


def read_3gpp_tsg(path: str | Path | None) -> QuestionSet:
    """Every scorable record of a ``3gpp_tsg`` file (JSON array or JSONL); bad ones counted, not fatal."""
    if not path:
        raise ValueError("--data: give GSMA Open Telco's test_3gpp_tsg.json (3gpp_tsg has no default file)")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file; give GSMA Open Telco's test_3gpp_tsg.json "
                         "(objects with question, answer, file_name)")
    data = QuestionSet(questions=[])
    with open(path, encoding="utf-8") as f:
        head = f.read(64).lstrip()
    if head.startswith("["):
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"--data {path}: not a valid JSON array ({exc.msg})") from None
        for number, record in enumerate(records, 1):
            parsed = parse_3gpp_tsg(record, f"{path.name}:{number}")
            data.questions.append(parsed) if isinstance(parsed, Question) else data.skip(parsed, f"{path.name}:{number}")
    else:
        read_jsonl_records(data, path, path.name, parse_3gpp_tsg)
    if not data.questions:
        raise ValueError(f"--data {path}: no scorable record (skipped: {data.malformed})")
    return data
