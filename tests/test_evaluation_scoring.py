"""Log-likelihood scoring against direct transformers forwards; TeleQnA runs, metrics, shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from megatron_telecom.evaluation.cli import evaluate_main
from megatron_telecom.evaluation.loglikelihood import encode_pair, score_continuations
from megatron_telecom.evaluation.model_source import load_model
from megatron_telecom.evaluation.results import read_results


@pytest.fixture(scope="module")
def tiny(evaluation_tiny_model):
    return load_model(evaluation_tiny_model)


def direct_loglik(model, context_ids: list[int], continuation_ids: list[int]) -> float:
    """Summed log-probability of the continuation from one full forward of context + continuation."""
    with torch.no_grad():
        logits = model(torch.tensor([context_ids + continuation_ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[len(context_ids) - 1 + i, t]) for i, t in enumerate(continuation_ids))


def test_encode_pair_moves_trailing_space_to_the_continuation(tiny):
    context, continuation = encode_pair(tiny.tokenizer, "Answer: ", "T300")
    assert context == tiny.tokenizer("Answer:")["input_ids"]
    assert tiny.tokenizer.decode(continuation) == " T300"
    assert context + continuation == tiny.tokenizer("Answer: T300")["input_ids"]


@pytest.mark.parametrize("choices", [
    [" Hybrid Automatic Repeat Request", " High Availability Radio Queue", " X"],  # multi- and one-token
    [" A", " B", " C", " D", " E"],  # letters: one token each
])
def test_scores_equal_a_direct_forward(tiny, choices):
    context = "Question: What does the abbreviation HARQ stand for?\nAnswer:"
    pairs = [encode_pair(tiny.tokenizer, context, c) for c in choices]
    scores = score_continuations(tiny.model, pairs[0][0], [p[1] for p in pairs])
    for (ctx, cont), score in zip(pairs, scores):
        assert score.num_tokens == len(cont)
        assert score.loglik == pytest.approx(direct_loglik(tiny.model, ctx, cont), abs=1e-4)
    assert len({round(s.loglik, 3) for s in scores}) == len(choices)  # the model tells them apart


def test_scores_of_the_bundled_model_equal_a_direct_forward():
    model = load_model("bundled:smollm2-135m")
    context = "Question: Which channel carries the master information block in NR?\nAnswer:"
    pairs = [encode_pair(model.tokenizer, context, c) for c in [" PBCH", " PDSCH", " Physical uplink control channel"]]
    scores = score_continuations(model.model, pairs[0][0], [p[1] for p in pairs])
    for (ctx, cont), score in zip(pairs, scores):
        assert score.loglik == pytest.approx(direct_loglik(model.model, ctx, cont), abs=1e-4)


def run_teleqna(tmp_path, model, data, *extra: str) -> dict:
    output = tmp_path / "r.json"
    assert evaluate_main(["teleqna", "--model", str(model), "--data", str(data), "--output", str(output),
                          *extra]) == 0
    return read_results(output)


@pytest.mark.parametrize("mode", ["options", "letter"])
def test_teleqna_run_metrics_follow_lm_eval_definitions(tmp_path, evaluation_tiny_model,
                                                        evaluation_teleqna_fixture, mode):
    samples = tmp_path / "samples.jsonl"
    results = run_teleqna(tmp_path, evaluation_tiny_model, evaluation_teleqna_fixture, "--mode", mode,
                          "--shots", "1", "--log-samples", str(samples))
    result = results["teleqna"][f"{mode}-1shot"]
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(records) == 15 and result["malformed"] == {"bad_answer": 1, "bad_options": 1}
    acc = np.mean([np.argmax(r["loglik"]) == r["gold"] - 1 for r in records])
    norm = np.mean([np.argmax(np.array(r["loglik"]) / np.array(r["num_chars"])) == r["gold"] - 1 for r in records])
    assert result["overall"]["acc"] == pytest.approx(acc) and result["overall"]["acc_norm"] == pytest.approx(norm)
    assert result["overall"]["random"] == pytest.approx(np.mean([1 / len(r["loglik"]) for r in records]))
    assert set(result["categories"]) == {r["category"] for r in records}
    assert result["prompt_template"]["context"].startswith("Question: {question}")


def test_shards_merged_equal_one_process(tmp_path, evaluation_tiny_model, evaluation_teleqna_fixture):
    whole = run_teleqna(tmp_path / "one", evaluation_tiny_model, evaluation_teleqna_fixture, "--limit", "11")
    shards = []
    for index in range(3):
        out = tmp_path / f"shard{index}.json"
        assert evaluate_main(["teleqna", "--model", str(evaluation_tiny_model), "--data",
                              str(evaluation_teleqna_fixture), "--limit", "11", "--num-shards", "3",
                              "--shard-index", str(index), "--output", str(out)]) == 0
        shards.append(str(out))
    assert evaluate_main(["merge", *shards, "--output", str(tmp_path / "merged.json")]) == 0
    merged = read_results(tmp_path / "merged.json")["teleqna"]["options-0shot"]
    one = whole["teleqna"]["options-0shot"]
    assert merged["overall"] == one["overall"] and merged["categories"] == one["categories"]
    assert one["overall"]["n"] == 11
    assert evaluate_main(["merge", *shards[:2], "--output", str(tmp_path / "bad.json")]) == 2
