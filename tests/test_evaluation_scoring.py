"""Log-likelihood scoring against direct transformers forwards; TeleQnA runs, metrics, shards."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from megatron_telecom.evaluation.loglikelihood import (
    QUERY_BLOCK,
    HFScorer,
    PackedDecoder,
    _tree_rows,
    encode_pair,
    pack,
    packs_tokens,
    score_requests,
)
from megatron_telecom.evaluation.model_source import load_model
from megatron_telecom.evaluation.results import read_results

evaluate_main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "evaluate.py"))["main"]


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
    scores = score_requests(tiny.model, [(pairs[0][0], [p[1] for p in pairs])])[0]
    for (ctx, cont), score in zip(pairs, scores):
        assert score.num_tokens == len(cont)
        assert score.loglik == pytest.approx(direct_loglik(tiny.model, ctx, cont), abs=1e-4)
    assert len({round(s.loglik, 3) for s in scores}) == len(choices)  # the model tells them apart


@pytest.mark.real_model
def test_scores_of_the_bundled_model_equal_a_direct_forward():
    model = load_model("bundled:smollm2-135m")
    questions = {  # options sharing leading tokens share trie nodes; two questions form one batch
        "Question: Which channel carries the master information block in NR?\nAnswer:":
            [" PBCH", " PDSCH", " Physical uplink control channel", " Physical downlink shared channel"],
        "Question: What is the formula to determine the Paging Frame?\nAnswer:":
            [" SFN mod T = (T div N)*(UE_ID mod N)", " SFN mod T = (T div N)*(UE_ID_H mod N)", " 7"],
    }
    pairs = [[encode_pair(model.tokenizer, q, c) for c in choices] for q, choices in questions.items()]
    scores = score_requests(model.model, [(p[0][0], [c for _, c in p]) for p in pairs])
    for question_pairs, question_scores in zip(pairs, scores):
        for (ctx, cont), score in zip(question_pairs, question_scores):
            assert score.loglik == pytest.approx(direct_loglik(model.model, ctx, cont), abs=1e-4)


def test_pack_shares_context_and_common_option_prefixes():
    packed = pack([([5, 6, 7], [[1, 2, 3], [1, 2, 4], [9]])], limit=100)
    assert packed.input_ids == [5, 6, 7, 1, 2]  # the context once, then the shared prefix [1, 2] once
    assert packed.positions == [0, 1, 2, 3, 4] and packed.parents == [-1, 0, 1, 2, 3]
    assert packed.targets == [[(2, 1), (3, 2), (4, 3)], [(2, 1), (3, 2), (4, 4)], [(2, 9)]]
    # requests of one row share their leading context tokens, and only those
    row = pack([([5, 6, 7], [[1]]), ([5, 6, 8], [[2, 3]]), ([6], [[4]])], limit=100)
    assert row.input_ids == [5, 6, 7, 8, 2, 6] and row.positions == [0, 1, 2, 2, 3, 0]
    assert row.parents == [-1, 0, 1, 1, 3, -1]
    assert row.targets == [[(2, 1)], [(3, 2), (4, 3)], [(5, 4)]]
    # left-truncated as lm-eval does: (context + continuation)[-(limit + 1):][:-1] is the input
    assert pack([(list(range(10)), [[1, 2, 3]])], limit=6).input_ids == [6, 7, 8, 9, 1, 2]
    with pytest.raises(ValueError, match="empty context"):
        pack([([], [[1]])], limit=10)


def test_padded_batches_equal_single_requests(tiny):
    contexts = ["Question: Short?\nAnswer:", "Question: A much longer question about the RRC timers?\nAnswer:"]
    requests = []
    for context in contexts:
        pairs = [encode_pair(tiny.tokenizer, context, c) for c in [" T300", " T310 timer", " none"]]
        requests.append((pairs[0][0], [c for _, c in pairs]))
    together = score_requests(tiny.model, requests, tokens_per_batch=4096)
    alone = [score_requests(tiny.model, [r], tokens_per_batch=1)[0] for r in requests]
    for a, b in zip(together, alone):
        assert [s.loglik for s in a] == pytest.approx([s.loglik for s in b], abs=1e-4)


def _logliks(scorer, requests, tokens_per_batch: int = 2048) -> list[float]:
    return [s.loglik for r in score_requests(scorer, requests, tokens_per_batch) for s in r]


def _mistral_twin(llama: torch.nn.Module, sliding_window: int | None) -> torch.nn.Module:
    """A Mistral with the tiny Llama's shapes and weights (the same function but for the window)."""
    from transformers import MistralConfig, MistralForCausalLM

    config = llama.config.to_dict()
    for key in ("architectures", "model_type", "transformers_version"):
        config.pop(key, None)
    model = MistralForCausalLM(MistralConfig(**config, sliding_window=sliding_window)).eval()
    model.load_state_dict(llama.state_dict())
    return model


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_packed_decoder_equals_the_models_own_forward(tiny, arch):
    """``PackedDecoder`` (real tokens only; tree rows attended by blocks of queries, long causal rows
    padded) scores as the model's own forward on padded rows with 4-D masks."""
    model = tiny.model if arch == "llama" else _mistral_twin(tiny.model, sliding_window=None)
    packed, plain = HFScorer(model), HFScorer(model)
    assert isinstance(packed.decoder, PackedDecoder)
    plain.decoder = None
    topics = ["RRC timers", "HARQ processes", "the paging frame", "PDCCH blind decoding", "SSB beams"]
    trees = [(tiny.tokenizer(f"Question {i}: what governs {topic} in NR?\nAnswer:")["input_ids"],
              [tiny.tokenizer(f" option {k} for {topic}")["input_ids"] for k in range(4)])
             for i, topic in enumerate(topics * 12)]  # 60 questions: several rows of several query blocks
    rows, _ = _tree_rows(trees, packed.max_length, packed.row_tokens)
    assert len(rows) > 1 and max(len(r.input_ids) for r in rows) > 3 * QUERY_BLOCK
    assert _logliks(packed, trees) == pytest.approx(_logliks(plain, trees), rel=1e-6)
    text = " ".join(f"{topic} is configured by the network." for topic in topics * 12)
    ids = tiny.tokenizer(text)["input_ids"]
    chains = [(ids[:300], [ids[300:340]]), (ids[:280], [ids[280:290]])]  # one causal row each, padded
    assert _logliks(packed, chains, 8192) == pytest.approx(_logliks(plain, chains, 8192), rel=1e-6)


def test_packed_decoder_runs_llama_family_models_with_full_attention_only(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel

    assert packs_tokens(tiny.model) and packs_tokens(_mistral_twin(tiny.model, sliding_window=None))
    assert not packs_tokens(_mistral_twin(tiny.model, sliding_window=16))  # windowed attention: own forward
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).eval()
    assert not packs_tokens(gpt2)
    assert _logliks(gpt2, [([1, 2, 3], [[4, 5], [6]])]) == pytest.approx(
        [direct_loglik(gpt2, [1, 2, 3], [4, 5]), direct_loglik(gpt2, [1, 2, 3], [6])], abs=1e-5)


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
