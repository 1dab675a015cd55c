"""Benchmark decontamination: n-gram hashing, planted TeleQnA text found in a corpus (real TeleQnA,
decrypted at run time), the 80 real RFCs against TeleQnA and ORAN-Bench, CPT/SFT/DPO rows through
tools/decontaminate.py (drop, flag, bad rows, report), and the datatrove step.

Invented exams (written here, in the generic JSONL format) stand in for a benchmark where the
behaviour, not the data, is tested; real benchmark text is never written into the repository.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from datatrove.data import Document

from megatron_telecom.data.curation.steps import BenchmarkDecontamination
from megatron_telecom.data.decontamination import (
    DecontaminateConfig,
    Decontaminator,
    decontaminate,
    row_texts,
)
from megatron_telecom.data.ngram_overlap import NgramIndex, batch_ngrams, normalize
from megatron_telecom.evaluation.benchmarks import benchmark_source
from megatron_telecom.evaluation.questions import stratified_sample

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TELEQNA, ORANBENCH, RFC = SHARED / "teleqna" / "TeleQnA.zip", SHARED / "oranbench", SHARED / "rfc"
decontaminate_main = runpy.run_path(str(REPO / "tools" / "decontaminate.py"))["main"]

# An invented exam: long enough questions that 13-grams exist.
EXAM = [
    {"question": "Which invented timer guards the reselection of a test cell after the fixture sends "
                 "its made up paging message?", "choices": ["T9001", "T9002", "T9003"], "answer": 0},
    {"question": "In this invented protocol, what does the imaginary node forward when the synthetic "
                 "bearer between two fixtures is released?", "choices": ["A marker", "Nothing"], "answer": 1,
     "explanation": "The imaginary node forwards a release marker so that the synthetic bearer of the "
                    "test fixture ends cleanly on both sides."},
]
FILLER = ("Carrier aggregation combines component carriers to widen the usable bandwidth of a "
          "link, and the scheduler decides every slot which carrier serves which user.")


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def exam(tmp_path) -> Path:
    return _write_jsonl(tmp_path / "exam.jsonl", EXAM)


def test_ngrams_are_normalised_like_lm_eval_and_stay_inside_one_text():
    assert normalize("The UE's gNB-CU, in TS\u00a038.401!") == b"the ues gnbcu in ts 38401"
    a = batch_ngrams(["The UE's gNB-CU starts timer T300 now."], 3)
    b = batch_ngrams(["prefix words: the ues gnbcu STARTS timer t300 NOW"], 3)
    assert set(a.hashes.tolist()) <= set(b.hashes.tolist()) and len(a.hashes) == 5
    assert a.text_of(0, 3) == "the ues gnbcu"
    two = batch_ngrams(["one two", "three four"], 3)  # 4 words, but no 3 of them in one text
    assert len(two.hashes) == 0 and list(batch_ngrams(["a b c", "d e f g"], 3).text_index) == [0, 1, 1]
    index = NgramIndex.build(["alpha beta gamma delta"], [7], 3)
    positions, owners = index.lookup(batch_ngrams(["x alpha beta gamma y"], 3).hashes)
    assert positions.tolist() == [1] and owners.tolist() == [7]


def test_benchmark_specs(tmp_path):
    assert benchmark_source("teleqna", "--benchmarks", "teleqna") == ("teleqna", "teleqna", None)
    assert benchmark_source("oranbench=/d/oran", "--b", "x") == ("oranbench", "oranbench", "/d/oran")
    assert benchmark_source("exams/wg_test.jsonl", "--b", "x") == ("wg_test", "jsonl", "exams/wg_test.jsonl")
    assert benchmark_source("wg=/d/test.jsonl", "--b", "x") == ("wg", "jsonl", "/d/test.jsonl")
    with pytest.raises(ValueError, match="--benchmarks mmlu: unknown benchmark 'mmlu'"):
        benchmark_source("mmlu", "--benchmarks", "mmlu")
    exam = _write_jsonl(tmp_path / "exam.jsonl", EXAM)
    with pytest.raises(ValueError, match="a second benchmark named 'exam'; name it NAME=FILE"):
        Decontaminator.from_specs([str(exam), f"exam={exam}"])


@pytest.fixture(scope="module")
def real_decontaminator() -> Decontaminator:
    missing = [str(p) for p in (TELEQNA, ORANBENCH / "fin_E.json") if not p.is_file()]
    if missing:
        pytest.skip(f"real benchmark data not found: {', '.join(missing)} (../shared/data)")
    return Decontaminator.from_specs([f"teleqna={TELEQNA}", f"oranbench={ORANBENCH}"])


def _disguised(text: str) -> str:
    """The text as a corpus might hold it: other case, punctuation and line breaks."""
    return text.upper().replace(" ", "\n   ", 3).replace(",", " ,").replace("?", "")


def test_planted_teleqna_questions_options_and_explanations_are_found(real_decontaminator):
    teleqna = {o.question.id: o.question for o in real_decontaminator.owners if o.benchmark == "teleqna"}
    sample = stratified_sample(list(teleqna.values()), 60)
    planted = []  # (question id, what was planted, row texts)
    for q in sample:
        for what, piece in (("question", q.question), ("options", " ".join(q.options)),
                            ("explanation", q.explanation)):
            if len(normalize(piece).split()) >= 13:
                planted.append((q, what, [FILLER, f"{FILLER} {_disguised(piece)} {FILLER}"]))
    assert len(planted) >= 80  # most questions and explanations are long enough to check
    hits = real_decontaminator.match([texts for _, _, texts in planted])
    missed = [(q.id, what) for i, (q, what, _) in enumerate(planted) if i not in hits]
    assert missed == []
    for i, (q, _, _) in enumerate(planted):  # the hit names the planted question (or its twin text)
        named = [teleqna[qid] for qid in hits[i].questions["teleqna"]]
        assert q.id in hits[i].questions["teleqna"] or any(
            n.question == q.question or n.explanation == q.explanation for n in named)
    assert real_decontaminator.match([[FILLER]]) == {}


def test_real_rfcs_against_teleqna_and_oranbench(real_decontaminator):
    """Two TLS RFCs share text with TeleQnA (its questions quote them); every other RFC, none."""
    if not any(RFC.glob("rfc*.txt")):
        pytest.skip(f"real RFC corpus not found at {RFC} (../shared/data/rfc)")
    paths = sorted(RFC.glob("rfc*.txt"))
    hits = real_decontaminator.match([[p.read_text(encoding="utf-8", errors="replace")] for p in paths])
    found = {paths[i].stem: sorted(h.questions) for i, h in hits.items()}
    assert found == {"rfc5246": ["teleqna"], "rfc8446": ["teleqna"]}
    assert len(paths) == 80 and hits[paths.index(RFC / "rfc8446.txt")].examples["teleqna"]["ngram"].startswith(
        "notifies the recipient that the sender will")


def test_cpt_sft_and_dpo_rows_dropped_with_bad_rows_counted(tmp_path, exam, capsys):
    q0, q1 = EXAM[0]["question"], EXAM[1]["question"]
    explanation = EXAM[1]["explanation"]
    rows = [
        {"id": "clean-doc", "text": FILLER, "source": "rfc"},
        {"id": "cpt-hit", "text": f"{FILLER} {q0.lower()}", "source": "rfc"},
        {"messages": [{"role": "user", "content": q1}, {"role": "assistant", "content": "A marker."}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": FILLER}]},
        {"prompt": "Explain the release.", "completion": explanation},
        {"prompt": [{"role": "user", "content": "Why?"}], "chosen": [{"role": "assistant", "content": "Because."}],
         "rejected": [{"role": "assistant", "content": f"{FILLER} {explanation}"}]},
        {"prompt": "Which carrier?", "chosen": FILLER, "rejected": "None."},
        '{"text": "broken json',
        "[1, 2]",
        {"title": "no text key"},
        {"text": 5},
        {"messages": [1, 2]},
    ]
    source = _write_jsonl(tmp_path / "train.jsonl", rows)
    with open(source, "ab") as f:
        f.write(b'{"text": "bad \xff utf-8"}\n')
    out = tmp_path / "clean.jsonl"
    assert decontaminate_main(["--input", str(source), "--output", str(out), "--benchmarks", f"exam={exam}",
                               "--removed-output", str(tmp_path / "removed.jsonl")]) == 0
    lines = source.read_bytes().splitlines(keepends=True)
    assert out.read_bytes() == b"".join(lines[i] for i in (0, 3, 6))  # clean rows, byte for byte
    removed = [json.loads(line) for line in (tmp_path / "removed.jsonl").read_text().splitlines()]
    assert [r["contamination"]["benchmarks"] for r in removed] == [
        {"exam": ["exam.jsonl:1"]}, {"exam": ["exam.jsonl:2"]}, {"exam": ["exam.jsonl:2"]}, {"exam": ["exam.jsonl:2"]}]
    report = json.loads((tmp_path / "clean.decontamination.json").read_text())
    assert report["rows"]["read"] == 13 and report["rows"]["contaminated"] == 4 and report["rows"]["written"] == 3
    assert report["rows"]["bad"]["by_reason"] == {"invalid_json": 1, "not_an_object": 1, "missing_key": 1,
                                                  "non_string": 1, "bad_format": 1, "invalid_utf8": 1}
    assert report["rows"]["bad"]["examples"]["missing_key"] == [f"{source}:10"]
    assert report["by_source"] == {"rfc": {"exam": 1}, "train.jsonl": {"exam": 3}}
    bench = report["benchmarks"]["exam"]
    assert (bench["questions"], bench["rows_hit"], bench["questions_hit"]) == (2, 4, 2)
    assert report["examples"]["exam"][0]["field"] == "question_and_choices" and report["examples"]["exam"][0]["row_id"] == "cpt-hit"
    assert [e["field"] for e in report["examples"]["exam"]][2:] == ["explanation", "explanation"]
    assert "4 rows share a 13-gram with a benchmark (dropped)" in capsys.readouterr().out


def test_flag_keeps_every_good_row_and_marks_the_hits(tmp_path, exam):
    rows = [{"text": FILLER}, {"text": EXAM[0]["question"], "id": 7}, "not json"]
    source = _write_jsonl(tmp_path / "train.jsonl", rows)
    config = DecontaminateConfig(input=[str(source)], output=str(tmp_path / "out" / "flagged.jsonl"),
                                 benchmarks=[str(exam)], action="flag", report=str(tmp_path / "r.json"))
    report = decontaminate(config)
    out = [json.loads(line) for line in (tmp_path / "out" / "flagged.jsonl").read_text().splitlines()]
    assert out[0] == {"text": FILLER} and out[1]["contamination"] == {
        "benchmarks": {"exam": ["exam.jsonl:1"]}, "ngrams": {"exam": len(EXAM[0]["question"].split()) - 12}}
    assert (report.written, report.contaminated, report.bad.counts) == (2, 1, {"invalid_json": 1})
    assert json.loads((tmp_path / "r.json").read_text())["action"] == "flag"
    with pytest.raises(ValueError, match="--removed-output only applies with --action drop"):
        DecontaminateConfig(input=["x"], output="y", action="flag", removed_output="z")


def test_row_texts_by_format():
    assert row_texts({"body": "a", "title": ["b", "c"]}, "text", ("title", "body")) == ["b", "c", "a"]
    assert row_texts({"prompt": "p", "chosen": "c", "rejected": "r"}, "auto", ("text",)) == ["p", "c", "r"]
    assert row_texts({"chosen": "c", "rejected": "r", "text": "t"}, "text", ("text",)) == ["t"]


def test_datatrove_step_drops_or_flags_documents(exam):
    docs = [Document(text=FILLER, id="a"), Document(text=f"{FILLER} {EXAM[1]['explanation']}", id="b")]
    step = BenchmarkDecontamination(benchmarks=(str(exam),), batch_size=8)
    assert [d.id for d in step.run(iter(docs))] == ["a"]
    assert step.stats["contaminated:exam"].total == 1 and step.stats["dropped_benchmark_overlap"].total == 1
    flagged = list(BenchmarkDecontamination(benchmarks=(str(exam),), action="flag").run(iter(docs)))
    assert [d.metadata.get("contamination") for d in flagged] == [
        None, {"benchmarks": {"exam": ["exam.jsonl:2"]}, "ngrams": {"exam": len(EXAM[1]["explanation"].split()) - 12}}]
