"""Generative evaluation: metrics against their libraries, batched greedy generation against
transformers' ``generate`` one prompt at a time, stop sequences and the token limit, bad input
counted, --chat refused without a template, TeleQnA-open, results in ``compare``."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path

import pytest
import torch

from megatron_telecom.evaluation.generation_metrics import aggregate, corpus_metrics, sample_metrics
from megatron_telecom.evaluation.model_source import load_model
from megatron_telecom.evaluation.open_generation import (
    GenerationConfig,
    encode_prompt,
    greedy_generate,
)
from megatron_telecom.evaluation.open_questions import OpenQuestion, read_open_jsonl, teleqna_open
from megatron_telecom.evaluation.results import read_results
from megatron_telecom.evaluation.teleqna import read_teleqna

evaluate_main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "evaluate.py"))["main"]

PREDICTIONS = ["The gNB-CU!", "an F1.", "Xn-U carries user data", "timer T300 starts", ""]
REFERENCES = [["gNB-CU", "the central unit"], ["F1"], ["Xn-U carries user plane data between gNBs"],
              ["T300 starts when the UE sends RRCSetupRequest", "on RRC setup"], ["nothing"]]
PROMPTS = ["The UE starts timer T300 when", "Question: Which interface connects the gNB-CU and the gNB-DU?\nAnswer:",
           "5G", "The AMF selects an SMF for the PDU session and", "RRC", "Question: What is HARQ?\nAnswer:",
           "In NR, the SSB"]


@pytest.fixture(scope="module")
def tiny(evaluation_tiny_model):
    return load_model(evaluation_tiny_model)


def _one_by_one(model, prompt: list[int], new_tokens: int) -> list[int]:
    out = model.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               max_new_tokens=new_tokens, do_sample=False, pad_token_id=model.tokenizer.eos_token_id)
    return out[0, len(prompt):].tolist()


def test_metrics_equal_torchmetrics_squad_rouge_score_and_sacrebleu():
    from rouge_score import rouge_scorer
    from torchmetrics.functional.text import squad

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    samples = []
    for i, (prediction, references) in enumerate(zip(PREDICTIONS, REFERENCES)):
        ours = sample_metrics(prediction, references)
        theirs = squad([{"prediction_text": prediction, "id": str(i)}],
                       [{"answers": {"answer_start": [0] * len(references), "text": references}, "id": str(i)}])
        assert ours["exact_match"] == pytest.approx(theirs["exact_match"].item() / 100)
        assert ours["f1"] == pytest.approx(theirs["f1"].item() / 100, abs=1e-6)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert ours[key] == max(scorer.score(r, prediction)[key].fmeasure for r in references)
        samples.append({"prediction": prediction, "references": references, **ours})
    assert [s["exact_match"] for s in samples] == [1.0, 1.0, 0.0, 0.0, 0.0]  # SQuAD drops articles, punctuation
    import sacrebleu

    streams = [[r[0] for r in REFERENCES], [r[1] if len(r) > 1 else None for r in REFERENCES]]
    both = corpus_metrics(PREDICTIONS, REFERENCES)
    assert both["bleu"] == sacrebleu.corpus_bleu(PREDICTIONS, streams).score / 100
    assert both["chrf"] == sacrebleu.corpus_chrf(PREDICTIONS, streams).score / 100
    first_only = corpus_metrics(PREDICTIONS, [r[:1] for r in REFERENCES])
    assert first_only["bleu"] == sacrebleu.corpus_bleu(PREDICTIONS, streams[:1]).score / 100
    assert corpus_metrics(["the central unit"], [["gNB-CU", "the central unit"]])["chrf"] == 1.0  # any reference
    summary = aggregate(samples)
    assert summary["n"] == 5 and summary["exact_match"] == pytest.approx(0.4) and summary["bleu"] == both["bleu"]


def test_batched_greedy_generation_is_token_identical_to_generate_one_by_one(tiny):
    prompts = [tiny.tokenizer(p)["input_ids"] for p in PROMPTS]
    config = GenerationConfig(max_new_tokens=10, batch_size=3, until=())  # 7 prompts: rows leave and join
    completions = greedy_generate(tiny, prompts, config)
    for prompt, completion in zip(prompts, completions, strict=True):
        assert list(completion.ids) == _one_by_one(tiny, prompt, len(completion.ids))
        assert completion.finish in ("eos", "length")
        assert completion.finish == "eos" or len(completion.ids) == 10
        assert completion.text == tiny.tokenizer.decode(completion.ids, skip_special_tokens=True)


def test_stop_sequences_end_an_answer_and_cut_its_text(tiny):
    prompt = tiny.tokenizer(PROMPTS[0])["input_ids"]
    free = greedy_generate(tiny, [prompt], GenerationConfig(max_new_tokens=12, until=()))[0]
    assert free.finish == "length" and len(free.ids) == 12
    text = tiny.tokenizer.decode(free.ids, skip_special_tokens=True)
    stop = tiny.tokenizer.decode(free.ids[5:7], skip_special_tokens=True).strip()[:3]  # a word from the middle
    assert stop
    expected_text = text.split(stop)[0]
    stopped = greedy_generate(tiny, [prompt, prompt], GenerationConfig(max_new_tokens=12, until=("@@@", stop)))
    for completion in stopped:  # ends at the first token whose text completes the stop sequence
        assert completion.finish == "stop" and completion.text == expected_text
        first = next(n for n in range(1, 13) if stop in tiny.tokenizer.decode(free.ids[:n], skip_special_tokens=True))
        assert completion.ids == free.ids[:first]
    assert GenerationConfig(until=("\\n\\n",)).until == ("\n\n",)  # typed on a command line
    with pytest.raises(ValueError, match="--max-new-tokens 0"):
        GenerationConfig(max_new_tokens=0)


def test_chat_prompts_render_the_system_message_and_template_less_models_are_refused(tiny, evaluation_tiny_model,
                                                                                     tmp_path, capsys):
    question = OpenQuestion("q", "What is HARQ?", ("hybrid ARQ",), system="Answer briefly.")
    ids = encode_prompt(tiny.tokenizer, question, chat=True)
    expected = tiny.tokenizer.apply_chat_template([{"role": "system", "content": "Answer briefly."},
                                                   {"role": "user", "content": "What is HARQ?"}],
                                                  add_generation_prompt=True)["input_ids"]
    assert ids == list(expected)
    bare = tmp_path / "no-template"
    shutil.copytree(evaluation_tiny_model, bare)
    (bare / "chat_template.jinja").unlink()
    (tmp_path / "q.jsonl").write_text(json.dumps({"prompt": "What is HARQ?", "references": ["hybrid ARQ"]}) + "\n")
    assert evaluate_main(["open", "--model", str(bare), "--data", str(tmp_path / "q.jsonl"), "--chat"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--chat: the model's tokenizer has no chat template" in error[0]


def test_open_command_counts_bad_input_writes_samples_and_compare_shows_it(evaluation_tiny_model, tmp_path, capsys):
    good = [{"prompt": "The UE starts timer T300 when", "references": ["it sends RRCSetupRequest"], "category": "rrc"},
            {"id": "harq", "prompt": "Question: What is HARQ?\nAnswer:", "references": "hybrid ARQ",
             "category": "mac", "system": "Be brief."},
            {"prompt": "5G NR uses", "references": ["OFDM", "CP-OFDM"], "category": "phy"}]
    lines = [json.dumps(good[0]).encode(), json.dumps({"prompt": "no refs"}).encode(),
             json.dumps({"prompt": "  ", "references": ["x"]}).encode(), b'{"prompt": "caf\xe9", "references": ["x"]}',
             json.dumps(good[1]).encode(), b"{not json", json.dumps({"prompt": "p", "references": [""]}).encode(),
             json.dumps({"prompt": "p", "references": []}).encode(), json.dumps(good[2]).encode(), b""]
    data = tmp_path / "mine.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    questions = read_open_jsonl(data)
    assert [q.id for q in questions.questions] == ["mine.jsonl:1", "harq", "mine.jsonl:9"]
    assert questions.malformed == {"missing_references": 2, "missing_prompt": 1, "not_utf8": 1, "not_json": 1,
                                   "bad_references": 1}
    out, samples = tmp_path / "r.json", tmp_path / "samples.jsonl"
    assert evaluate_main(["open", "--model", str(evaluation_tiny_model), "--data", str(data), "--max-new-tokens", "6",
                          "--output", str(out), "--log-samples", str(samples)]) == 0
    captured = capsys.readouterr()
    assert "skipped malformed records" in captured.err and "not_utf8" in captured.err
    result = read_results(out)["mine"]["greedy"]
    assert result["kind"] == "generative" and result["overall"]["n"] == 3
    assert sorted(result["categories"]) == ["mac", "phy", "rrc"] and result["malformed"]["missing_references"] == 2
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert {r["id"] for r in records} == {"mine.jsonl:1", "harq", "mine.jsonl:9"}
    assert all(0 < r["generated_tokens"] <= 6 and set(r) >= {"prediction", "references", "rougeL"} for r in records)
    assert "ROUGE-L %" in captured.out and "overall" in captured.out
    assert evaluate_main(["compare", str(out), str(out), "--labels", "a", "b", "--output-dir", str(tmp_path)]) == 0
    table = (tmp_path / "comparison.txt").read_text()
    assert "mine/greedy/overall/rougeL" in table and "mine/greedy/phy/bleu" in table
    assert (tmp_path / "comparison.png").stat().st_size > 0


def test_teleqna_open_asks_without_options_with_answer_and_explanation_as_references(evaluation_teleqna_fixture):
    source = read_teleqna(evaluation_teleqna_fixture)
    derived = teleqna_open(source)
    assert len(derived.questions) == len(source.questions) and derived.malformed == source.malformed
    for mc, open_question in zip(source.questions, derived.questions):
        assert open_question.prompt == f"Question: {mc.question}\nAnswer:"
        assert open_question.references[0] == mc.options[mc.gold]
        assert open_question.references[1:] == ((mc.explanation,) if mc.explanation else ())
        assert open_question.category == mc.category and open_question.id == mc.id
