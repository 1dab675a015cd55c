"""Perplexity and bits per byte against direct transformers forwards; inputs; results files."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from megatron_telecom.evaluation.model_source import load_model
from megatron_telecom.evaluation.perplexity import (
    Document,
    perplexity,
    prefix_token,
    read_documents,
    windows,
)
from megatron_telecom.evaluation.results import read_results

evaluate_main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "evaluate.py"))["main"]

TEXT = ("The gNB sends the RRCSetup message after it receives an RRCSetupRequest from the UE. "
        "The UE then starts timer T300 and waits for the response; on expiry it informs upper layers. ")


@pytest.fixture(scope="module")
def tiny(evaluation_tiny_model):
    return load_model(evaluation_tiny_model)


def direct_nll(model, ids: list[int]) -> float:
    """NLL of ids[1:] from one forward over all of ``ids``."""
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return -sum(float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids)))


def test_windows_score_every_token_once_with_bounded_input():
    ids = list(range(100))
    for seq_length, stride in [(16, 16), (16, 5), (200, 7), (8, 1)]:
        spans = list(windows(ids, seq_length, stride))
        assert [t for w in spans for t in w.targets] == ids[1:]
        for w in spans:
            assert len(w.input_ids) <= seq_length
            first_target = w.targets[0]
            assert w.input_ids[w.first] == first_target - 1  # the position before the first target
    with pytest.raises(ValueError, match="--stride 20"):
        list(windows(ids, 16, 20))


@pytest.mark.parametrize("stride", [None, 9])
def test_short_document_equals_one_direct_forward(tiny, stride):
    docs = [read_documents_from_text(tiny, TEXT)]
    result = perplexity(tiny, docs, seq_length=256, stride=stride)
    ids = [prefix_token(tiny.tokenizer), *docs[0].ids]
    nll = direct_nll(tiny.model, ids)
    assert result["tokens"] == len(ids) - 1 and result["bytes"] == len(TEXT.encode())
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll / result["tokens"]), rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nll / math.log(2) / len(TEXT.encode()), rel=1e-5)


def test_long_document_windows_equal_direct_forwards_of_each_window(tiny):
    doc = read_documents_from_text(tiny, TEXT * 3)
    ids = [prefix_token(tiny.tokenizer), *doc.ids]
    seq_length, stride = 32, 16
    expected = 0.0
    for begin in range(1, len(ids), stride):
        end = min(begin + stride, len(ids))
        start = max(0, end - 1 - seq_length)
        with torch.no_grad():
            logprobs = torch.log_softmax(tiny.model(torch.tensor([ids[start:end]])).logits[0].float(), -1)
        expected -= sum(float(logprobs[i - 1 - start, ids[i]]) for i in range(begin, end))
    result = perplexity(tiny, [doc], seq_length=seq_length, stride=stride, tokens_per_batch=64)
    assert result["nll"] == pytest.approx(expected, rel=1e-5)


def read_documents_from_text(tiny, text: str) -> Document:
    return Document(tiny.tokenizer(text, add_special_tokens=False)["input_ids"], len(text.encode()))


def test_inputs_jsonl_txt_and_dataset_prefix_agree(tmp_path, tiny):
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / "a.jsonl").write_text(json.dumps({"body": TEXT}) + "\n\n")
    builder = IndexedDatasetBuilder(str(tmp_path / "a.bin"), dtype=np.uint16)
    ids = tiny.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    builder.add_document(torch.tensor(ids), [len(ids)])
    builder.finalize(str(tmp_path / "a.idx"))
    txt = read_documents(str(tmp_path / "a.txt"), tiny.tokenizer)
    assert read_documents(str(tmp_path / "a.jsonl"), tiny.tokenizer, json_key="body") == txt
    assert read_documents(str(tmp_path / "a"), tiny.tokenizer) == txt
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n{"other": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*'text'"):
        read_documents(str(tmp_path / "bad.jsonl"), tiny.tokenizer)


def test_cli_writes_results_and_refuses_another_models_file(tmp_path, evaluation_tiny_model, capsys):
    (tmp_path / "held_out.txt").write_text(TEXT)
    output = tmp_path / "results.json"
    argv = ["perplexity", "--model", str(evaluation_tiny_model), "--input", str(tmp_path / "held_out.txt"),
            "--seq-length", "64", "--output", str(output)]
    assert evaluate_main(argv) == 0
    assert "bits/byte" in capsys.readouterr().out
    section = read_results(output)["perplexity"]
    assert section[str(tmp_path / "held_out.txt")]["seq_length"] == 64
    argv[2] = "bundled:smollm2-135m"
    assert evaluate_main(argv) == 2
    assert "holds results of model" in capsys.readouterr().err
