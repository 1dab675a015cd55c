"""ORAN-Bench-13K reader (real files and every malformed kind), the generic multiple-choice JSONL
format (TeleQnA and ORAN-Bench read into it and written back), and the majority-answer baseline."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from megatron_telecom.evaluation.accuracy import summarize
from megatron_telecom.evaluation.oranbench import DEFAULT_DIR, read_oranbench
from megatron_telecom.evaluation.questions import (
    build_prompt,
    category_counts,
    question_record,
    read_questions_jsonl,
    stratified_sample,
)
from megatron_telecom.evaluation.results import read_results
from megatron_telecom.evaluation.teleqna import read_teleqna

evaluate_main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "evaluate.py"))["main"]

GOOD = ["What does O-DU stand for?", ["1. O-RAN Distributed Unit", "2. Data Unit", "3. Digital Unit",
                                       "4. Downlink Unit"], "1"]


def _write_oranbench(folder: Path, rows: dict[str, list]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("fin_E.json", "fin_M.json", "fin_H.json"):
        (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                                           for r in rows.get(name, [GOOD])))
    return folder


def test_oranbench_rows_of_every_malformed_kind_are_counted_not_fatal(tmp_path):
    bad = {
        "no_options": ["Which entity?", [], "3"],
        "option_count_3": ["Q?", ["1. a", "2. b", "3. c"], "1"],
        "option_count_5": ["Q?", ["1. a", "2. b", "3. c", "4. d", "5. e"], "5"],
        "option_count_6": ["Q?", ["1. a", "2. b", "3. c", "4. d", "5. e", "6. f"], "6"],
        "answer_outside_options": ["Q?", ["1. a", "2. b", "3. c", "4. d"], "5"],
        "bad_answer": ["Q?", ["1. a", "2. b", "3. c", "4. d"], "B"],
        "bad_numbering": ["Q?", ["1. a", "3. b", "2. c", "4. d"], "1"],
        "missing_question": ["", ["1. a", "2. b", "3. c", "4. d"], "1"],
        "not_a_row": {"question": "Q?"},
        "not_json": "[\"Q?\", [",
    }
    folder = _write_oranbench(tmp_path / "oran", {"fin_M.json": [GOOD, *bad.values()]})
    data = read_oranbench(folder)
    assert data.malformed == {reason: 1 for reason in bad}
    assert data.malformed_examples["no_options"] == ["fin_M:2"]
    assert category_counts(data.questions) == {"easy": 1, "hard": 1, "medium": 1}
    question = data.questions[0]
    assert question.options == ("O-RAN Distributed Unit", "Data Unit", "Digital Unit", "Downlink Unit")
    assert question.gold == 0 and question.id == "fin_E:1"
    context, continuations, _ = build_prompt(question, "letter", [])
    assert context.endswith("A. O-RAN Distributed Unit\nB. Data Unit\nC. Digital Unit\nD. Downlink Unit\nAnswer:")
    assert build_prompt(question, "options", [])[1][0] == " O-RAN Distributed Unit"  # numbering stripped
    with pytest.raises(ValueError, match="fin_E.json, fin_M.json, fin_H.json not found"):
        read_oranbench(tmp_path / "missing")


def test_real_oranbench_files():
    if not (DEFAULT_DIR / "fin_E.json").is_file():
        pytest.skip(f"ORAN-Bench-13K not found in {DEFAULT_DIR} (put ../shared beside the checkout)")
    data = read_oranbench()
    assert data.malformed == {"missing_question": 88, "no_options": 45, "option_count_3": 1,
                              "option_count_5": 2, "option_count_6": 1}
    assert len(data.questions) + sum(data.malformed.values()) == 13_952
    assert category_counts(data.questions) == {"easy": 1139, "hard": 3224, "medium": 9452}
    assert all(len(q.options) == 4 for q in data.questions)
    yang = next(q for q in data.questions if q.id == "fin_M:945")  # ["1. 1.0", "2. 1.1", ...]: numbers stripped once
    assert yang.options == ("1.0", "1.1", "2.0", "2.1") and yang.gold == 1
    sample = stratified_sample(data.questions, 3000)
    assert category_counts(sample) == {"easy": 247, "hard": 700, "medium": 2053}
    easy = [{"gold": q.gold + 1, "category": q.category, "loglik": [0.0] * 4, "num_chars": [1] * 4, "order": i}
            for i, q in enumerate(data.questions) if q.category == "easy"]
    overall = summarize(easy)["overall"]  # a skewed key: 35% of fin_E's answers are option 1
    assert overall["majority"] == pytest.approx(397 / 1139) and overall["random"] == 0.25


def test_generic_jsonl_reads_back_what_the_readers_write(tmp_path, evaluation_teleqna_fixture):
    teleqna = read_teleqna(evaluation_teleqna_fixture)
    out = tmp_path / "teleqna.jsonl"
    assert evaluate_main(["questions", "--benchmark", "teleqna", "--data", str(evaluation_teleqna_fixture),
                          "--output", str(out)]) == 0
    assert read_questions_jsonl(out).questions == teleqna.questions
    assert json.loads(out.read_text().splitlines()[0]) == question_record(teleqna.questions[0])


def test_generic_jsonl_malformed_lines_are_counted(tmp_path):
    lines = [
        {"question": "Which layer does ciphering in NR?", "choices": ["PDCP", "RLC"], "answer": 0},
        {"question": "Q?", "choices": ["a"], "answer": 0},
        {"question": "Q?", "choices": ["a", "b"], "answer": 2},
        {"question": "Q?", "choices": ["a", "b"], "answer": True},
        {"question": " ", "choices": ["a", "b"], "answer": 0},
        {"question": "Q?", "choices": ["a", "b"], "answer": 1, "category": 3},
        ["not", "an", "object"],
    ]
    path = tmp_path / "exam.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{broken\n\n")
    data = read_questions_jsonl(path)
    assert [q.id for q in data.questions] == ["exam.jsonl:1"] and data.questions[0].category == "all"
    assert data.malformed == {"bad_choices": 1, "bad_answer": 2, "missing_question": 1, "bad_category": 1,
                              "not_an_object": 1, "not_json": 1}
    path.write_text("{broken\n")
    with pytest.raises(ValueError, match="no scorable question"):
        read_questions_jsonl(path)
    with pytest.raises(ValueError, match="no such file"):
        read_questions_jsonl(tmp_path / "missing.jsonl")


def test_exam_command_scores_a_generic_file_with_both_baselines(tmp_path, evaluation_tiny_model):
    exam = tmp_path / "my_exam.jsonl"
    rows = [{"question": f"Which release introduced feature {i}?", "choices": ["Rel-15", "Rel-16", "Rel-17"],
             "answer": 0 if i < 3 else 1, "category": "releases" if i % 2 else "features"} for i in range(6)]
    exam.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output = tmp_path / "r.json"
    assert evaluate_main(["exam", "--model", str(evaluation_tiny_model), "--data", str(exam),
                          "--output", str(output)]) == 0
    overall = read_results(output)["my_exam"]["options-0shot"]["overall"]
    assert overall["n"] == 6 and overall["majority"] == 0.5 and overall["random"] == pytest.approx(1 / 3)
    assert evaluate_main(["compare", str(output), str(output), "--labels", "a", "b", "--output-dir",
                          str(tmp_path / "cmp")]) == 0
    assert "my_exam/options-0shot/overall/majority" in (tmp_path / "cmp" / "comparison.txt").read_text()
