"""Tokenizer ids equal sentencepiece's and megatron-core's own tokenizer classes (the parity base)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
import sentencepiece as spm
from megatron.core.tokenizers import MegatronTokenizer

from megatron_telecom.data.tokenizers import build_tokenizer, bundled_tokenizer_model

REPO = Path(__file__).resolve().parents[1]
RFC_DIR = REPO.parent / "shared" / "data" / "rfc"
SAMPLE_TEXTS = [json.loads(line)["text"] for line in open(REPO / "examples/data/telecom_sample.jsonl", encoding="utf-8")]
PIECES = [" ", "  ", "\n", "\t", "\r", "a", "B", "z9", "1", "23", ".", ",", "é", "ü", "中", "▁", "[INST]", "<s>",
          "</s>", "\u200b", "😀", "ﬁ", "①", "\u00a0", "\u3000", "\ufeff", "gNB", "the", " TS 38.331 "]


def fuzz_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14))) for _ in range(count)]


@pytest.mark.parametrize("name", ["mistral-v1", "mistral-v3"])
def test_sentencepiece_word_cache_is_exact(name):
    """The chunked, cached encoder gives exactly sentencepiece's ids (edge-case fuzz + real text)."""
    ours = build_tokenizer("SentencePieceTokenizer", f"bundled:{name}")
    reference = spm.SentencePieceProcessor(model_file=str(bundled_tokenizer_model(name)))
    texts = fuzz_texts(0, 5000) + SAMPLE_TEXTS
    if RFC_DIR.is_dir():
        texts += [p.read_bytes().decode("utf-8") for p in sorted(RFC_DIR.glob("*.txt"))[:20]]
    assert ours.tokenize_batch(texts) == reference.encode(texts)
    assert ours.tokenize_batch(texts[::-1]) == reference.encode(texts[::-1])  # warm cache, other order


@pytest.mark.parametrize(("options", "note"), [
    ({}, "the normalizer 'nmt_nfkc' may change the text"),  # the trainer's default normalizer
    ({"normalization_rule_name": "identity", "remove_extra_whitespaces": False, "split_by_whitespace": False},
     "a piece spans a space"),
    ({"normalization_rule_name": "identity", "remove_extra_whitespaces": False}, None),
])
def test_sentencepiece_word_cache_only_where_provable(tmp_path, options, note):
    """A model whose normalizer may change text beyond spaces, or with a piece across a space, is
    encoded whole (with a note); an identity-normalized one takes the cache; ids are exact in all."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SAMPLE_TEXTS), model_writer=model, model_type="bpe",
                                   vocab_size=300, minloglevel=2, **options)
    (tmp_path / "tiny.model").write_bytes(model.getvalue())
    ours = build_tokenizer("SentencePieceTokenizer", tmp_path / "tiny.model")
    assert (ours.fast_path_note is None) if note is None else (note in ours.fast_path_note)
    texts = fuzz_texts(1, 2000) + SAMPLE_TEXTS
    assert ours.tokenize_batch(texts) == spm.SentencePieceProcessor(model_file=str(tmp_path / "tiny.model")).encode(texts)


@pytest.mark.parametrize("tokenizer_type", ["SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer"])
def test_sentencepiece_types_match_megatron_core(tokenizer_type):
    ours = build_tokenizer(tokenizer_type, "bundled:mistral-v1")
    theirs = MegatronTokenizer.from_pretrained(
        tokenizer_path=str(bundled_tokenizer_model("mistral-v1")), metadata_path={"library": "sentencepiece"},
        legacy=False, special_tokens=None)
    assert (ours.vocab_size, ours.eod) == (theirs.vocab_size, theirs.eod) == (32000, 2)
    for text in SAMPLE_TEXTS[:20] + fuzz_texts(1, 200):
        assert ours.tokenize(text) == theirs.tokenize(text)


def test_huggingface_matches_megatron_core():
    folder = REPO / "tests" / "fixtures" / "hf_tokenizer"
    ours = build_tokenizer("HuggingFaceTokenizer", folder)
    theirs = MegatronTokenizer.from_pretrained(
        tokenizer_path=str(folder), metadata_path={"library": "huggingface"}, vocab_file=None, merges_file=None,
        additional_special_tokens=[], use_fast=False, trust_remote_code=False, include_special_tokens=False)
    assert (ours.vocab_size, ours.eod) == (theirs.vocab_size, theirs.eod)
    texts = SAMPLE_TEXTS[:30] + fuzz_texts(2, 300)
    assert ours.tokenize_batch(texts) == [theirs.tokenize(t) for t in texts]
    assert build_tokenizer("HuggingFaceTokenizer", folder / "tokenizer.json").vocab_size == ours.vocab_size


def test_null_tokenizer_and_errors(tmp_path):
    null = build_tokenizer("NullTokenizer", vocab_size=100)
    assert (null.vocab_size, null.eod, null.tokenize("4 5  6")) == (101, 100, [4, 5, 6])
    with pytest.raises(ValueError, match="--vocab-size"):
        build_tokenizer("NullTokenizer")
    with pytest.raises(ValueError, match="unknown bundled tokenizer"):
        build_tokenizer("SentencePieceTokenizer", "bundled:llama-9")
    with pytest.raises(ValueError, match="cannot load a Hugging Face tokenizer"):
        build_tokenizer("HuggingFaceTokenizer", tmp_path)
