"""3GPP working-group classification from a corpus (docs/wg_classification.md): the versioned map, and a
benchmark built from invented 3GPP-like clause documents: spec-disjoint splits, balance, normative
clauses only, label leakage removed, the same bytes twice, a one-WG corpus refused in one line; the
test split scored by tools/evaluate.py and the train split accepted by preprocess_sft; GSMA's
3gpp_tsg layout read."""

from __future__ import annotations

import ast
import json
import runpy
from pathlib import Path

import jinja2
import pytest
import yaml

from megatron_telecom.data.wg_benchmark import (
    ANY_SPEC_NUMBER,
    WORKING_GROUP_MENTION,
    WGBenchmarkConfig,
    corpus_wg_benchmark,
    normative_sections,
    own_number_pattern,
    train_records,
)
from megatron_telecom.data.working_groups import (
    GSMA_CLASSES,
    WORKING_GROUPS,
    normalize_spec_number,
    spec_table,
    spec_type,
    working_group,
)
from megatron_telecom.evaluation.questions import build_prompt, read_questions_jsonl
from megatron_telecom.evaluation.threegpp_tsg import read_3gpp_tsg

REPO = Path(__file__).resolve().parents[1]
build_main = runpy.run_path(str(REPO / "tools" / "build_wg_benchmark.py"))["main"]
evaluate_main = runpy.run_path(str(REPO / "tools" / "evaluate.py"))["main"]

# Invented specs (numbers real, text not): WG -> spec numbers. CT3 has one spec only: left out.
SPECS = {"RAN1": ["38.211", "38.212", "38.213"], "RAN2": ["38.321", "38.322", "38.323", "38.331"],
         "SA2": ["23.501", "23.502"], "CT3": ["29.512"]}
VOCAB = {"RAN1": "symbol slot numerology subcarrier precoding layer mapping resource grid",
         "RAN2": "entity timer buffer retransmission header segment window counter",
         "SA2": "function session policy slice registration anchor service exposure",
         "CT3": "charging rule binding usage report policy decision quota"}


def _body(wg: str, spec: str, clause: str, sentences: int) -> str:
    words = VOCAB[wg].split()
    return "\n".join(f"The {words[i % 8]} {spec.replace('.', '')}x{clause}s{i} shall apply to the "
                     f"{words[(i * 3) % 8]} as the {words[(i * 5) % 8]} requires in every case." for i in range(sentences))


def _documents(wg: str, spec: str) -> list[dict]:
    """A curated spec: front clauses, normative clauses with leakage, an informative annex."""
    meta = {"source": "3gpp", "spec_number": spec, "spec_type": "TS", "spec_series": spec[:2], "clause_kind": "text"}
    pieces = [
        ("1", "1 Scope", f"# 1 Scope\nThe present document SCOPEWORD specifies {spec}.\n# 2 References\n"
                         f"[1] 3GPP TR 21.905 REFERENCEWORD\n# 3 Definitions\nDEFINITIONWORD: a term."),
        ("4", "4 General", f"# 4 General\n{_body(wg, spec, '4', 12)}\nAs specified in 3GPP TS {spec} clause 5, "
                           f"see also TS {spec}; the procedures of TS 38.300 apply.\nNOTE: NOTEWORD is informative.\n| TABLEWORD | a |\n"
                           f"## 4.1 Details\n{_body(wg, spec, '41', 12)}"),
        ("5", "5 Procedures", f"# 5 Procedures\n{_body(wg, spec, '5', 10)}\nThis was agreed by TSG RAN WG2 "
                              f"in R2-2301234.\n{_body(wg, spec, '51', 10)}"),
        ("Annex A (informative)", "Annex A (informative): Examples",
         f"# Annex A (informative): Examples\nINFORMATIVEWORD example.\n## A.1 More\n{_body(wg, spec, 'A', 6)}"),
        ("Annex B (normative)", "Annex B (normative): Rules", f"# Annex B (normative): Rules\n## B.1 Rule\n"
                                                              f"{_body(wg, spec, 'B', 8)}"),
    ]
    return [{"text": text, "id": f"{spec}#{i:04d}", "doc_id": spec, "clause": clause, "clause_path": path,
             "clause_index": i, **meta} for i, (clause, path, text) in enumerate(pieces)]


def _corpus(folder: Path, specs: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = [d for wg, numbers in specs.items() for spec in numbers for d in _documents(wg, spec)]
    records.append({"text": "An RFC.", "id": "rfc1", "source": "rfc"})
    (folder / "00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _build(corpus: Path, out: Path, *extra: str) -> dict:
    assert build_main(["--input", str(corpus), "--output-dir", str(out), "--snippet-words", "30",
                       "--test-per-class", "6", "--train-per-class", "10", *extra]) == 0
    return json.loads((out / "wg_benchmark.json").read_text())


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_map_is_versioned_and_answers_from_the_table_then_the_series_rules():
    table = spec_table()
    assert len(table) == 3154 and set(table.values()) == set(WORKING_GROUPS) and len(WORKING_GROUPS) == 15
    assert len(GSMA_CLASSES) == 16 and "RAN_AH1" in GSMA_CLASSES
    cases = {"38.321": "RAN2", "38.211": "RAN1", "38.413": "RAN3", "38.101-1": "RAN4", "38.133": "RAN4",
             "38.521-1": "RAN5", "38.307": "RAN4", "23.501": "SA2", "23.003": "CT4", "23.280": "SA6",
             "24.501": "CT1", "29.502": "CT4", "29.512": "CT3", "33.501": "SA3", "26.114": "SA4",
             "28.541": "SA5", "22.261": "SA1", "31.102": "CT6", "38.901": "RAN1"}
    assert {s: working_group(s).working_group for s in cases} == cases
    assert working_group("TS 38.321").how == "table" and working_group("38321").working_group == "RAN2"
    assert working_group("38.101-9").working_group == "RAN4"  # a new part: with its siblings
    assert working_group("38.599") == working_group("36.599") and working_group("38.599").how == "rule"
    assert working_group("26.999").working_group == "SA4" and working_group("38.699") is None
    assert working_group("38.999", "TR") is None and working_group("29.999") is None  # 29: CT3 or CT4
    assert normalize_spec_number("3GPP TS 38.101-1") == "38.101-1" and normalize_spec_number("RFC 791") is None
    # a document without a cover (type unknown) is typed by the table, else by its number
    assert [spec_type("38.471"), spec_type("38.913"), spec_type("38.999"), spec_type("38.599"),
            spec_type("38.913", "TS")] == ["TS", "TR", "TR", "TS", "TS"]


def test_normative_sections_leave_front_matter_informative_annexes_notes_and_tables_out():
    docs = _documents("RAN2", "38.321")
    text = " ".join(body for d in docs for _, body in normative_sections(d["text"], d["clause_path"]))
    for marker in ("SCOPEWORD", "REFERENCEWORD", "DEFINITIONWORD", "NOTEWORD", "TABLEWORD", "INFORMATIVEWORD"):
        assert marker not in text
    assert "38321x4s0" in text and "38321x41s0" in text and "38321xBs0" in text
    # a document that starts inside an informative annex stays out, one inside a normative clause stays in
    assert normative_sections("## A.2 More\nsome text", "Annex A (informative): X > A.2 More") == []
    assert normative_sections("more text", "5 Procedures > 5.1 RA") == [("5.1", "more text")]


def test_leakage_patterns():
    own = own_number_pattern("38.101-1")
    assert own.sub("X", "see 3GPP TS 38.101-1 and TS 38.101-2, 38.101-1 [2], 38.101-10") == \
        "see X and TS 38.101-2, X [2], 38.101-10"
    for text in ("RAN1", "RAN WG2", "TSG SA WG2", "CT4", "CT 1", "SA6", "RAN_AH1", "R2-2301234", "S2-190001",
                 "RAN working group"):
        assert WORKING_GROUP_MENTION.search(f"as agreed in {text} meeting"), text
    for text in ("NR SA 5G", "S1AP", "the SA mode", "RANK 2", "CT=1 state", "an S1-U tunnel"):
        assert not WORKING_GROUP_MENTION.search(text), text
    assert ANY_SPEC_NUMBER.sub("[spec]", "TS 38.331 [2], 23.501, 30.720 MHz, 12.345, 38.101-1 and 29.5.") == \
        "[spec] [2], [spec], 30.720 MHz, 12.345, [spec] and 29.5."


def test_benchmark_is_spec_disjoint_balanced_leak_free_and_scorable(tmp_path, evaluation_tiny_model):
    report = _build(_corpus(tmp_path / "corpus", SPECS), tmp_path / "wg")
    assert report["classes"] == ["RAN1", "RAN2", "SA2"] and "CT3" in report["classes_dropped"]
    test, train = _rows(tmp_path / "wg" / "test.jsonl"), _rows(tmp_path / "wg" / "train.jsonl")
    # disjoint by specification, and the sidecar says which spec went where
    test_specs, train_specs = {r["spec"] for r in test}, {r["spec"] for r in train}
    assert test_specs and train_specs and not test_specs & train_specs
    assert {s for s, v in report["specs"].items() if v["split"] == "test"} == test_specs
    # balanced up to what the corpus holds: min(cap, available) per class, counted per class
    for wg, counts in report["per_class"].items():
        assert counts["test"] == min(6, counts["available_test"]) == sum(r["category"] == wg for r in test)
        assert counts["train"] == min(10, counts["available_train"])
        assert counts["specs_test"] >= 1 and counts["specs_train"] >= 1
    assert report["test"] == len(test) == 18 and report["baselines"]["random"] == pytest.approx(1 / 3)
    # fixed length, normative only, no label in the text
    texts = [r["question"] for r in test] + [r["messages"][0]["content"] for r in train]
    for row in test + train:
        spec = row["spec"]
        text = row["question"] if "question" in row else row["messages"][0]["content"]
        assert not own_number_pattern(spec).search(text) and not WORKING_GROUP_MENTION.search(text)
    snippets = [t.split("\n")[1] for t in texts]
    assert all(len(s.split()) == 30 for s in snippets)
    assert not any(m in s for s in snippets for m in ("SCOPEWORD", "NOTEWORD", "TABLEWORD", "INFORMATIVEWORD"))
    assert report["counts"]["names_working_group"] > 0 and report["counts"]["own_spec_number_rewritten"] > 0
    assert any("the present document clause 5" in s for s in snippets)
    # the generic format, read back; train rows carry their answer and provenance
    questions = read_questions_jsonl(tmp_path / "wg" / "test.jsonl")
    assert not questions.malformed and all(q.options == ("RAN1", "RAN2", "SA2") for q in questions.questions)
    assert all(q.options[q.gold] == q.category for q in questions.questions)
    assert all(r["messages"][1]["content"] == report["specs"][r["spec"]]["working_group"]
               and r["task"] == "working_group" for r in train)
    # scored by tools/evaluate.py exam like any exam
    output = tmp_path / "r.json"
    assert evaluate_main(["exam", "--model", str(evaluation_tiny_model), "--data",
                          str(tmp_path / "wg" / "test.jsonl"), "--output", str(output)]) == 0
    overall = json.loads(output.read_text())["test"]["options-0shot"]["overall"]
    assert overall["n"] == 18 and overall["random"] == pytest.approx(1 / 3)


def test_same_corpus_and_seed_give_the_same_bytes(tmp_path):
    corpus = _corpus(tmp_path / "corpus", SPECS)
    _build(corpus, tmp_path / "a")
    _build(corpus, tmp_path / "b")
    _build(corpus, tmp_path / "c", "--seed", "7")
    names = ("test.jsonl", "train.jsonl", "wg_benchmark.json")
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()
    # what other data builders call gives the same rows as the tool wrote
    config = WGBenchmarkConfig(input=[str(corpus)], output_dir="", snippet_words=30, test_per_class=6,
                               train_per_class=10)
    assert list(train_records(corpus_wg_benchmark(config))) == _rows(tmp_path / "a" / "train.jsonl")


def test_mask_all_spec_numbers_leaves_no_spec_number(tmp_path):
    report = _build(_corpus(tmp_path / "corpus", SPECS), tmp_path / "wg", "--mask-all-spec-numbers")
    def texts(out: Path) -> list[str]:
        return [r["question"] for r in _rows(out / "test.jsonl")] + \
            [r["messages"][0]["content"] for r in _rows(out / "train.jsonl")]

    assert report["counts"]["other_spec_numbers_masked"] > 0
    assert any("procedures of [spec] apply" in t for t in texts(tmp_path / "wg"))
    assert not any(ANY_SPEC_NUMBER.search(t) for t in texts(tmp_path / "wg"))
    _build(tmp_path / "corpus", tmp_path / "plain")  # without the flag, other specs' numbers stay
    assert any("procedures of TS 38.300 apply" in t for t in texts(tmp_path / "plain"))


def test_completion_rows_use_the_scored_prompt(tmp_path):
    _build(_corpus(tmp_path / "corpus", SPECS), tmp_path / "wg", "--train-format", "completion")
    row = _rows(tmp_path / "wg" / "train.jsonl")[0]
    assert row["prompt"].startswith("Question: Text from a 3GPP specification:\n") and row["prompt"].endswith(
        "\nAnswer:") and row["completion"] in {" RAN1", " RAN2", " SA2"}


def test_a_one_working_group_corpus_is_refused_in_one_line(tmp_path, capsys):
    corpus = _corpus(tmp_path / "one", {"RAN2": ["38.321", "38.322", "38.323"]})
    assert build_main(["--input", str(corpus), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --input: the corpus holds one working group only "
                                                   "(RAN2: 3 specification(s))")
    # two groups, but one has a single spec: no spec-disjoint split for it, so one class is left
    corpus = _corpus(tmp_path / "two", {"RAN2": ["38.321", "38.322"], "SA2": ["23.501"]})
    assert build_main(["--input", str(corpus), "--output-dir", str(tmp_path / "out")]) == 2
    assert "with at least 2 specifications per class" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="--test-spec-fraction"):
        WGBenchmarkConfig(input=["x"], output_dir="y", test_spec_fraction=1.0)


def test_gsma_3gpp_tsg_layout_is_read_into_the_same_question(tmp_path):
    labels = "{'CT1', 'CT3', 'CT4', 'CT6', 'RAN1', 'RAN2', 'RAN3', 'RAN4', 'RAN5', 'RAN_AH1', 'SA1', 'SA2', " \
             "'SA3', 'SA4', 'SA5', 'SA6'}"
    prompt = ("You are an expert. Classify the following text into one of the 3GPP working groups. You MUST select "
              f"ONE working group name from this list: {labels}.\n\n###TEXT:\n{{Invented text about a {{codec}}\n"
              "mode.}")
    records = [{"question": prompt, "answer": "SA4", "file_name": "S4-000001.txt"},
               {"question": prompt, "answer": "XX9", "file_name": "bad.txt"},
               {"question": "no text marker", "answer": "SA4", "file_name": "bad2.txt"}]
    path = tmp_path / "test_3gpp_tsg.json"
    path.write_text(json.dumps(records))
    data = read_3gpp_tsg(path)
    assert data.malformed == {"answer_not_a_label": 1, "missing_text": 1}
    (question,) = data.questions
    assert question.id == "S4-000001.txt" and question.options == GSMA_CLASSES and question.category == "SA4"
    assert question.options[question.gold] == "SA4"
    assert question.question == ("Text from a 3GPP specification:\nInvented text about a {codec} mode.\n"
                                 "Which 3GPP working group is responsible for it?")
    lines = tmp_path / "tsg.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_3gpp_tsg(lines).questions == data.questions
    assert evaluate_main(["questions", "--benchmark", "3gpp_tsg", "--data", str(path),
                          "--output", str(tmp_path / "q.jsonl")]) == 0
    assert read_questions_jsonl(tmp_path / "q.jsonl").questions[0].options == GSMA_CLASSES


def test_letter_prompt_and_lm_eval_template_take_sixteen_choices():
    """16 labels exceed the old A-J letters: both our prompt and the lm-eval task file go to Z."""
    from megatron_telecom.evaluation.questions import Question

    question = Question("q", "Which group?", GSMA_CLASSES, 15, "CT6")
    context, continuations, _ = build_prompt(question, "letter", [])
    assert "\nP. CT6\nAnswer:" in context and continuations[-1] == " P"
    template = yaml.safe_load((REPO / "megatron_telecom/evaluation/lm_eval_tasks/_letter_template.yaml").read_text())
    doc = {"question": "Which group?", "choices": list(GSMA_CLASSES)}
    env = jinja2.Environment()
    assert env.from_string(template["doc_to_text"]).render(**doc) == context
    assert ast.literal_eval(env.from_string(template["doc_to_choice"]).render(**doc)) == list("ABCDEFGHIJKLMNOP")


def test_train_rows_are_accepted_by_preprocess_sft_and_train_on_the_answer_only(tmp_path):
    """Both train formats through preprocess_sft's row tokenizer with SmolLM2's real tokenizer and chat
    template: the trained (mask 1) tokens are the working group's name and the end of the turn."""
    from megatron_telecom.bundled import resolve_hf_path
    from megatron_telecom.data.chat_template import ChatRenderer
    from megatron_telecom.data.sft import tokenize_row

    renderer = ChatRenderer(resolve_hf_path("bundled:smollm2-135m"))
    corpus = _corpus(tmp_path / "corpus", SPECS)
    for train_format, end in (("chat", "<|im_end|>\n"), ("completion", renderer.hf.eos_token)):
        _build(corpus, tmp_path / train_format, "--train-format", train_format)
        for row in _rows(tmp_path / train_format / "train.jsonl")[:6]:
            result = tokenize_row(renderer, json.dumps(row).encode(), 512)
            trained = renderer.hf.decode([t for t, m in zip(result.tokens, result.loss_mask) if m])
            answer = row["messages"][1]["content"] if train_format == "chat" else row["completion"]
            assert trained == f"{answer}{end}", (train_format, trained)
