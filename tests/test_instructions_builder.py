"""tools/build_sft_data.py on invented 3GPP and RFC records: the rows of every task, verbatim answers,
determinism, rejections by reason, --extra-sft, and preference pairs that preprocess_dpo accepts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from _instruction_fixtures import NO_ABBREVIATIONS, RECORDS, SPEC

from megatron_telecom.data.instructions.negatives import allowed
from megatron_telecom.data.instructions.vocabulary import (
    Entry,
    collapse,
    found_verbatim,
    is_run_together,
    record_entries,
    split_abbreviation,
)

REPO = Path(__file__).resolve().parents[1]


def tool(name: str):
    """A tools/NAME.py module, loaded in this process."""
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_sft_data, preprocess_dpo = tool("build_sft_data"), tool("preprocess_dpo")

# (task, variant, clause, term, prompt, answer): written out by hand from the fixtures (seed 1234)
EXPECTED = [
    ("definition", "", "3.1", "Test anchor", 'What is the definition of "Test anchor" in 3GPP TS 99.101?',
     "an invented node that terminates the test bearer."),
    ("definition", "", "3.1", "Quiet period", 'What is the definition of "Quiet period" in 3GPP TS 99.101?',
     "the invented time during which no test frame is sent."),
    ("definition", "", "3.1", "Busy period", 'What is the definition of "Busy period" in 3GPP TS 99.101?',
     "the invented time during which test frames are sent."),
    ("abbreviation", "", "3.2", "TAN", "Expand the abbreviation TAN (3GPP TS 99.101).", "Test Anchor Node"),
    ("abbreviation", "", "3.2", "TA", "What is the expansion of TA as used in 3GPP TS 99.101?", "Test Anchor"),
    ("abbreviation", "", "3.2", "QPF", "Expand the abbreviation QPF (3GPP TS 99.101).", "Quiet Period Function"),
    ("abbreviation", "", "3.2", "TBR", "What is the expansion of TBR as used in 3GPP TS 99.101?",
     "Test Bearer Reference"),
    ("spec_identification", "title_to_spec", "title", "Invented Test Anchor Protocol; Stage 2",
     'Name the 3GPP specification whose title is "Invented Test Anchor Protocol; Stage 2".', "3GPP TS 99.101"),
    ("spec_identification", "spec_to_title", "title", "3GPP TS 99.101", "What is 3GPP TS 99.101 called?",
     "Invented Test Anchor Protocol; Stage 2"),
    ("spec_identification", "scope_to_spec", "1",
     "The present document specifies the invented test anchor protocol used by the builder tests.",
     'The scope of a 3GPP specification reads: "The present document specifies the invented test anchor '
     'protocol used by the builder tests." Which one is it?', "3GPP TS 99.101"),
    ("spec_identification", "spec_to_scope", "1", "3GPP TS 99.101",
     "What does 3GPP TS 99.101 cover, according to its scope?",
     "The present document specifies the invented test anchor protocol used by the builder tests."),
    ("abbreviation", "", "3.2", "QFP", "3GPP TS 99.102 uses the abbreviation QFP. What does it stand for?",
     "Quiet Frame Protocol"),
    ("definition", "", "2", "relay node", 'According to RFC 9999, what is meant by "relay node"?',
     "A node that forwards invented frames between two endpoints."),
    ("definition", "", "2", "frame", 'In RFC 9999, what does "frame" mean?',
     "A frame is the unit of data that the invented protocol sends."),
    ("abbreviation", "", "3", "ITTP", "What is the expansion of ITTP as used in RFC 9999?",
     "Invented Test Transfer Protocol"),
    ("abbreviation", "", "3", "RN", "In RFC 9999, what does the abbreviation RN stand for?", "Relay Node"),
    ("spec_identification", "title_to_spec", "title", "The Invented Test Transfer Protocol",
     '"The Invented Test Transfer Protocol": which RFC has this title?', "RFC 9999"),
    ("spec_identification", "spec_to_title", "title", "RFC 9999", "What is RFC 9999 called?",
     "The Invented Test Transfer Protocol"),
    ("spec_identification", "scope_to_spec", "Abstract",
     "This document specifies the Invented Test Transfer Protocol (ITTP), a protocol that exists only in test "
     "fixtures.",
     'Identify the RFC whose abstract reads: "This document specifies the Invented Test Transfer Protocol '
     '(ITTP), a protocol that exists only in test fixtures."', "RFC 9999"),
    ("spec_identification", "spec_to_scope", "Abstract", "RFC 9999",
     "Summarise the abstract of RFC 9999 in its own words.",
     "This document specifies the Invented Test Transfer Protocol (ITTP), a protocol that exists only in test "
     "fixtures."),
]
EXPECTED_REJECTED = {"duplicate": 1, "invalid_json": 1, "no_expansion": 1, "no_text": 1,
                     "not_an_abbreviation": 1, "not_verbatim": 1, "reference_only": 1,
                     "run_together_entries": 2}


def _write(path: Path, records: list, extra_lines: tuple[str, ...] = ()) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(extra_lines), encoding="utf-8")
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Path]:
    corpus = _write(tmp_path / "curated.jsonl", RECORDS, ("not json\n", json.dumps({"id": "x"}) + "\n"))
    out, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    assert build_sft_data.main(["--input", str(corpus), "--output", str(out), "--dpo-output", str(dpo)]) == 0
    return {"corpus": corpus, "sft": out, "dpo": dpo, "sidecar": tmp_path / "sft.build.json"}


def test_every_task_gives_the_hand_expected_rows(built):
    rows = _rows(built["sft"])
    got = [(r["task"], r.get("variant", ""), r["clause"], r["term"], r["messages"][0]["content"],
            r["messages"][1]["content"]) for r in rows]
    assert got == EXPECTED
    assert rows[3] == {"messages": [{"role": "user", "content": "Expand the abbreviation TAN (3GPP TS 99.101)."},
                                    {"role": "assistant", "content": "Test Anchor Node"}],
                       "task": "abbreviation", "source": "3gpp", "doc_id": "99101-j00", "document": "3GPP TS 99.101",
                       "clause": "3.2", "term": "TAN", "template": 3, "record_id": "99101-j00#0000"}


def test_answers_are_verbatim_in_their_source_record(built):
    by_id = {r["id"]: r for r in RECORDS}
    for row in _rows(built["sft"]):
        assert found_verbatim(row["messages"][1]["content"], by_id[row["record_id"]]), row
    # vocabulary answers are spans of the text itself, not metadata
    for row in _rows(built["sft"]):
        if row["task"] != "spec_identification":
            assert collapse(row["messages"][1]["content"]) in collapse(by_id[row["record_id"]]["text"])


def test_sidecar_counts_tasks_sources_and_bad_rows_by_reason(built):
    info = json.loads(built["sidecar"].read_text())
    assert info["rows"]["written"] == len(EXPECTED)
    assert info["rows"]["by_task"] == {"abbreviation": 7, "definition": 5, "spec_identification": 8}
    assert info["rows"]["by_task_and_source"]["abbreviation"] == {"3gpp": 5, "rfc": 2}
    assert info["rows"]["by_source"] == {"3gpp": 12, "rfc": 8}
    assert info["rejected"]["by_reason"] == EXPECTED_REJECTED
    assert info["rejected"]["examples"]["invalid_json"] == ["curated.jsonl:4"]
    assert info["inputs"][0]["sha256"] and len(info["templates"]["sha256"]) == 64


def test_same_input_and_seed_give_the_same_bytes_and_another_seed_other_prompts(built, tmp_path):
    again = tmp_path / "again.jsonl"
    build_sft_data.main(["--input", str(built["corpus"]), "--output", str(again), "--dpo-output",
                         str(tmp_path / "again_dpo.jsonl")])
    assert again.read_bytes() == built["sft"].read_bytes()
    assert (tmp_path / "again_dpo.jsonl").read_bytes() == built["dpo"].read_bytes()
    other = tmp_path / "other.jsonl"
    build_sft_data.main(["--input", str(built["corpus"]), "--output", str(other), "--seed", "7"])
    first, second = _rows(built["sft"]), _rows(other)
    assert [r["messages"][1] for r in first] == [r["messages"][1] for r in second]
    assert [r["messages"][0] for r in first] != [r["messages"][0] for r in second]


def test_a_clause_3_without_abbreviations_gives_no_rows_and_no_error(tmp_path):
    assert list(record_entries({**NO_ABBREVIATIONS, "title": ""})) == []
    out = tmp_path / "sft.jsonl"
    assert build_sft_data.main(["--input", str(_write(tmp_path / "c.jsonl", [NO_ABBREVIATIONS])),
                                "--output", str(out)]) == 0
    assert out.read_text() == ""
    assert json.loads((tmp_path / "sft.build.json").read_text())["rejected"]["total"] == 0


def test_run_together_abbreviation_lines_split_where_the_initials_spell_the_abbreviation():
    glued = ["TANTest Anchor Node", "9G-XY PQR9G Xylo Yard Pico Quota Rate", "Q2ZQuasi to Zenith", "9GC9G Core Zone"]
    assert is_run_together(glued) and not is_run_together(["QPF Quiet Period Function", "Q2Z Quasi to Zenith"])
    assert [split_abbreviation(line, run_together=True) for line in glued] == [
        ("TAN", "Test Anchor Node"), ("9G-XY PQR", "9G Xylo Yard Pico Quota Rate"), ("Q2Z", "Quasi to Zenith"),
        ("9GC", "9G Core Zone")]
    # one space: the first word, unless the expansion starts with another abbreviation-like word
    assert split_abbreviation("Q2Z Quasi to Zenith") == ("Q2Z", "Quasi to Zenith")
    assert split_abbreviation("QPFXA Quiet Period Function") == ("QPFXA", "Quiet Period Function")
    assert split_abbreviation("9G XYQ 9G Xylo Yard Quota") == ("9G XYQ", "9G Xylo Yard Quota")
    assert split_abbreviation("Lorem ipsum dolor") is None


def test_preference_pairs_prefer_nothing_wrong_and_preprocess_dpo_accepts_them(built, tmp_path, capsys):
    pairs = _rows(built["dpo"])
    assert len(pairs) == 12  # every vocabulary row; identification rows here have no second document
    for pair in pairs:
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert chosen != rejected and collapse(chosen).lower() not in collapse(rejected).lower()
        assert pair["negative"]["term"].lower() != pair["term"].lower()
    by_term = {p["term"]: p for p in pairs}
    # TAN's expansion holds TA's answer, so TA gets the other alike entry; QFP's comes from the series
    assert by_term["TA"]["rejected"][0]["content"] == "Test Bearer Reference"
    assert by_term["QFP"]["negative"] == {"term": "QPF", "document": "3GPP TS 99.101", "clause": "3.2",
                                          "pool": "same_family"}
    assert not allowed("TA", "Test Anchor", "TAN", "Test Anchor Node")
    info = json.loads(built["sidecar"].read_text())["pairs"]
    assert info["written"] == 12 and info["without_negative"]["by_reason"] == {"no_hard_negative": 8}
    prefix = tmp_path / "dpo"
    assert preprocess_dpo.main(["--input", str(built["dpo"]), "--output-prefix", str(prefix), "--seq-length", "512",
                                "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model",
                                "bundled:smollm2-135m", "--strict"]) == 0
    assert "Done: 12 pairs" in capsys.readouterr().out


def test_extra_sft_rows_are_merged_with_provenance_and_bad_ones_counted(tmp_path):
    good = {"messages": [{"role": "user", "content": "Which working group wrote this text?"},
                         {"role": "assistant", "content": "RAN2"}]}
    extra = tmp_path / "wg_train.jsonl"
    extra.write_text(json.dumps(good) + "\n{oops\n" + json.dumps({"messages": good["messages"][:1]}) + "\n"
                     + json.dumps({"prompt": "Text", "completion": "CT1", "source": "99101-j00"}) + "\n", encoding="utf-8")
    out = tmp_path / "sft.jsonl"
    corpus = _write(tmp_path / "c.jsonl", [SPEC])
    assert build_sft_data.main(["--input", str(corpus), "--output", str(out),
                                "--extra-sft", f"wg_classification={extra}"]) == 0
    rows = _rows(out)
    merged = [r for r in rows if r["task"] == "wg_classification"]
    assert merged == [{**good, "task": "wg_classification", "source": "extra:wg_train.jsonl",
                       "provenance": {"file": str(extra), "line": 1}},
                      {"prompt": "Text", "completion": "CT1", "task": "wg_classification",
                       "source": "99101-j00", "provenance": {"file": str(extra), "line": 4}}]
    info = json.loads((tmp_path / "sft.build.json").read_text())
    assert info["rows"]["by_task"]["wg_classification"] == 2
    assert info["rows"]["by_source"] == {"3gpp": 11, "extra:wg_train.jsonl": 2}
    assert info["rejected"]["by_reason"] == {"extra_invalid_json": 1, "extra_no_assistant_tokens": 1,
                                             "no_expansion": 1, "not_an_abbreviation": 1, "reference_only": 1}
    assert info["extra_sft"][0]["sha256"]


def test_bad_flags_are_one_error_line(tmp_path, capsys):
    corpus = _write(tmp_path / "c.jsonl", [SPEC])
    assert build_sft_data.main(["--input", str(corpus), "--output", str(tmp_path / "o.jsonl"),
                                "--tasks", "poetry"]) == 2
    assert build_sft_data.main(["--input", str(corpus), "--output", str(tmp_path / "o.jsonl"),
                                "--extra-sft", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: --tasks poetry") and err[1].startswith("error: --extra-sft")
    assert isinstance(next(iter(record_entries(SPEC))), Entry)
