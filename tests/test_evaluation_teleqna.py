"""TeleQnA reader: our fixture, an AES zip of it, the real TeleQnA.zip; sampling, shots, prompts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from megatron_telecom.evaluation.questions import (
    build_prompt,
    category_counts,
    shot_pool,
    shots_for,
    stratified_sample,
)
from megatron_telecom.evaluation.teleqna import DEFAULT_DATA, TELEQNA_ZIP_PASSWORD, read_teleqna

CATEGORIES = ["Lexicon", "Research overview", "Research publications", "Standards overview",
              "Standards specifications"]


def test_fixture_is_read_with_malformed_records_counted(evaluation_teleqna_fixture):
    data = read_teleqna(evaluation_teleqna_fixture)
    assert len(data.questions) == 15
    assert data.malformed == {"bad_answer": 1, "bad_options": 1}
    assert data.malformed_examples == {"bad_answer": ["question 15"], "bad_options": ["question 16"]}
    assert category_counts(data.questions) == {c: 3 for c in CATEGORIES}
    assert sorted({len(q.options) for q in data.questions}) == [2, 3, 4, 5]


def test_gold_is_taken_by_option_number_not_text(evaluation_teleqna_fixture):
    question = next(q for q in read_teleqna(evaluation_teleqna_fixture).questions if q.id == "question 9")
    assert question.gold == 1 and question.options[question.gold] == "3GPP"


def test_aes_zip_reads_like_the_json(tmp_path, evaluation_teleqna_fixture):
    import pyzipper

    archive = tmp_path / "TeleQnA.zip"
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as z:
        z.setpassword(TELEQNA_ZIP_PASSWORD)
        z.writestr("TeleQnA.txt", evaluation_teleqna_fixture.read_text())
    assert read_teleqna(archive) == read_teleqna(evaluation_teleqna_fixture)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="pass --data"):
        read_teleqna(tmp_path / "missing.zip")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="JSON object of questions"):
        read_teleqna(tmp_path / "list.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        read_teleqna(tmp_path / "broken.json")


def test_real_teleqna_zip():
    if not DEFAULT_DATA.is_file():
        pytest.skip(f"real TeleQnA not found at {DEFAULT_DATA} (../shared/data/teleqna)")
    data = read_teleqna(DEFAULT_DATA)
    assert len(data.questions) == 10_000 and data.malformed == {}
    assert category_counts(data.questions) == {
        "Lexicon": 500, "Research overview": 2000, "Research publications": 4500,
        "Standards overview": 1000, "Standards specifications": 2000}
    random = sum(1 / len(q.options) for q in data.questions) / len(data.questions)
    assert random == pytest.approx(0.2189, abs=1e-4)
    sample = stratified_sample(data.questions, 1000)
    assert category_counts(sample) == {
        "Lexicon": 50, "Research overview": 200, "Research publications": 450,
        "Standards overview": 100, "Standards specifications": 200}


def test_stratified_sample_is_deterministic_and_proportional(evaluation_teleqna_fixture):
    questions = read_teleqna(evaluation_teleqna_fixture).questions
    sample = stratified_sample(questions, 7)
    assert len(sample) == 7 and sample == stratified_sample(list(reversed(questions)), 7)
    assert max(Counter(q.category for q in sample).values()) == 2  # 7 over 5 equal categories
    assert category_counts(stratified_sample(questions, 5)) == {c: 1 for c in CATEGORIES}
    assert len(stratified_sample(questions, None)) == 15
    with pytest.raises(ValueError, match="--limit 0"):
        stratified_sample(questions, 0)


def test_shots_come_from_the_fixed_pool_never_the_question(evaluation_teleqna_fixture):
    questions = read_teleqna(evaluation_teleqna_fixture).questions
    pool = shot_pool(questions, 2)
    assert all(len(members) == 3 for members in pool.values())
    for question in questions:
        shots = shots_for(question, pool, 2)
        assert len(shots) == 2 and question not in shots
        assert all(s.category == question.category for s in shots)


def test_prompts_of_both_modes(evaluation_teleqna_fixture):
    questions = read_teleqna(evaluation_teleqna_fixture).questions
    question = next(q for q in questions if q.id == "question 13")
    shot = next(q for q in questions if q.id == "question 12")
    context, continuations, choices = build_prompt(question, "options", [shot])
    assert context == ("Question: Which timer does the UE start when it sends an RRCSetupRequest?\nAnswer: T300\n\n"
                       "Question: What is the subcarrier spacing of numerology 1 in NR?\nAnswer:")
    assert continuations == [" 15 kHz", " 30 kHz", " 60 kHz"] and choices == ["15 kHz", "30 kHz", "60 kHz"]
    context, continuations, choices = build_prompt(question, "letter", [])
    assert context.endswith("\nA. 15 kHz\nB. 30 kHz\nC. 60 kHz\nAnswer:")
    assert continuations == [" A", " B", " C"] and choices == ["A", "B", "C"]
