"""The Hugging Face word cache gives exactly the `tokenizers` library's ids, or steps aside.

Real tokenizers only: the built-in base model's (SmolLM2, ByteLevel BPE), the test fixture, and
real `tokenizers` pipelines derived from the fixture's vocabulary (Llama-3's Split regex, Digits,
and ones the cache must refuse: a normalizer, Metaspace, an unknown regex).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from megatron.core.tokenizers import MegatronTokenizer

from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.data.tokenizers import HuggingFaceTokenizer, build_tokenizer
from megatron_telecom.data.word_cache import LLAMA3_PATTERN, QWEN2_PATTERN
from megatron_telecom.training.config import TokenizerConfig
from megatron_telecom.training.data import build_tokenizer as build_training_tokenizer

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "hf_tokenizer"
RFC_DIR = REPO.parent / "shared" / "data" / "rfc"

# Edge cases: Unicode letters/marks/scripts, digits, whitespace runs, contractions, emoji, control
# characters, special-token text.
PIECES = [
    " ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", "\x0b", "\x0c", "\r", "\x00", "\x1c", "\x1f", "\x7f", "\x85",
    "\u00a0", "\u1680", "\u2000", "\u2028", "\u202f", "\u3000", "\ufeff", "\u200b", "\u200d", "\u180e",
    "a", "Z", "the", "gNB", "eNodeB", "x", "ß", "é", "e\u0301", "ü", "ſ", "ﬅ", "İ", "Ω", "中文", "日本", "한국어",
    "مرحبا", "עברית", "हिन्दी", "ไทย", "Ⅻ", "①", "½", "²", "٣", "０", "1", "22", "333", "4444", "3.14", "1,000",
    "'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'LL", "'d", "'", "''", "\u2019s", "n't", "-", "--", ".", "...",
    "!", "?!", "#", "$", "%", "&", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\", "|", "_", "~", "^", "`", "@",
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "\U0001f9d1", "<|endoftext|>", "<|im_start|>", "<|begin_of_text|>",
    "TS 38.331", " RRC_CONNECTED ", "0x1F", "v6.0.1", "http://x.y/z?a=1",
    "\u0c5c", "\U00011de0",  # a letter and a digit in Python's regex (Unicode 16+), not in the library's engine
]


ASCII_PIECES = [p for p in PIECES if p.isascii()] + [chr(c) for c in range(128)]


def fuzz_texts(seed: int, count: int, pieces: list[str] = PIECES) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 16))) for _ in range(count)]


def derived_tokenizer(root: Path, name: str, **changes) -> Path:
    """A copy of the fixture tokenizer with tokenizer.json fields replaced (a real tokenizer)."""
    folder = root / name
    shutil.copytree(FIXTURE, folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec.update(changes)
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    return folder


def byte_level(use_regex: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def split(pattern: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def sequence(*steps: dict) -> dict:
    return {"type": "Sequence", "pretokenizers": list(steps)}


@pytest.fixture(scope="session")
def tokenizers(tmp_path_factory) -> dict[str, HuggingFaceTokenizer]:
    root = tmp_path_factory.mktemp("hf_variants")
    cached = {
        "smollm2": "bundled:smollm2-135m",
        "fixture": FIXTURE,
        "llama3-split": derived_tokenizer(root, "llama3", pre_tokenizer=sequence(split(LLAMA3_PATTERN), byte_level(False))),
        "qwen2-split": derived_tokenizer(root, "qwen2", pre_tokenizer=sequence(split(QWEN2_PATTERN), byte_level(False))),
        "digits": derived_tokenizer(root, "digits", pre_tokenizer=sequence(
            {"type": "Digits", "individual_digits": True}, byte_level(True))),
    }
    refused = {
        "nfc": derived_tokenizer(root, "nfc", normalizer={"type": "NFC"}),
        "metaspace": derived_tokenizer(root, "metaspace", pre_tokenizer={
            "type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}),
        "unknown-regex": derived_tokenizer(root, "unknown", pre_tokenizer=sequence(split(r"\w+|\W+"), byte_level(False))),
        "prefix-space": derived_tokenizer(root, "prefix", pre_tokenizer={**byte_level(True), "add_prefix_space": True}),
    }
    built = {name: build_tokenizer("HuggingFaceTokenizer", spec) for name, spec in {**cached, **refused}.items()}
    for name in cached:
        assert built[name].fast_path_note is None, (name, built[name].fast_path_note)
    for name in refused:
        assert built[name].fast_path_note is not None, name
    return built


def library_ids(tokenizer: HuggingFaceTokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer._backend.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("name", ["smollm2", "fixture", "llama3-split", "qwen2-split", "digits"])
def test_word_cache_matches_tokenizers_on_fuzz(tokenizers, name):
    """Edge-case strings: same ids as the library; most of them really take the cached path."""
    tokenizer = tokenizers[name]
    texts = fuzz_texts(7, 2000) + fuzz_texts(8, 1000, ASCII_PIECES)  # ASCII-only text has its own splitter
    assert tokenizer.tokenize_batch(texts) == library_ids(tokenizer, texts)
    assert tokenizer.tokenize_batch(texts[::-1]) == library_ids(tokenizer, texts[::-1])  # warm cache
    cached = sum(tokenizer._splitter.split(t) is not None for t in texts)
    assert cached > 0.6 * len(texts)
    added = [t.content for t in tokenizer._backend.get_added_tokens_decoder().values()]
    special = [t for t in texts if any(a in t for a in added)]
    assert special and all(tokenizer._splitter.split(t) is None for t in special)


@pytest.mark.skipif(not RFC_DIR.is_dir(), reason=f"{RFC_DIR} is absent")
def test_word_cache_matches_tokenizers_on_rfcs(tokenizers):
    texts = [p.read_bytes().decode("utf-8") for p in sorted(RFC_DIR.glob("*.txt"))[:12]]
    for name in ("smollm2", "llama3-split"):
        tokenizer = tokenizers[name]
        assert tokenizer.tokenize_batch(texts) == library_ids(tokenizer, texts)
        assert all(tokenizer._splitter.split(t) is not None for t in texts)


@pytest.mark.parametrize("name", ["nfc", "metaspace", "unknown-regex", "prefix-space"])
def test_unreproducible_pipelines_fall_back_to_plain_encoding(tokenizers, name):
    tokenizer = tokenizers[name]
    assert "word cache is off" in tokenizer.fast_path_note
    texts = fuzz_texts(3, 300)
    assert tokenizer.tokenize_batch(texts) == library_ids(tokenizer, texts)


@pytest.mark.parametrize("char", ["\u0c5c", "\U00011de0", "\ud800"])
def test_characters_the_engines_split_differently_are_encoded_whole(tokenizers, char):
    """Characters newer Unicode classifies differently from the library's regex engine (a Telugu
    letter, a digit of Unicode 16), and a lone surrogate the library cannot take at all, are never
    trusted to the cache; the rest of the corpus still is."""
    splitter = tokenizers["smollm2"]._splitter
    assert splitter.split("plain text with é") is not None
    text = f"ab{char}cd 12{char}34"
    assert splitter.split(text) is None
    assert char in splitter._disagreeing
    if char != "\ud800":
        assert tokenizers["smollm2"].tokenize(text) == library_ids(tokenizers["smollm2"], [text])[0]


def test_bundled_smollm2_tokenizer():
    """`bundled:smollm2-135m` is the built-in base model's tokenizer, for preprocess and trainer,
    with megatron-core's own ids and EOD."""
    ours = build_tokenizer("HuggingFaceTokenizer", "bundled:smollm2-135m")
    folder = resolve_hf_path("bundled:smollm2-135m")
    assert ours.model_path == folder
    theirs = MegatronTokenizer.from_pretrained(
        tokenizer_path=str(folder), metadata_path={"library": "huggingface"}, vocab_file=None, merges_file=None,
        additional_special_tokens=[], use_fast=False, trust_remote_code=False, include_special_tokens=False)
    assert (ours.vocab_size, ours.eod) == (theirs.vocab_size, theirs.eod) == (49152, 2)  # eos: <|im_end|>
    texts = fuzz_texts(11, 200)
    assert ours.tokenize_batch(texts) == [theirs.tokenize(t) for t in texts]
    trainer = build_training_tokenizer(TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                                                       tokenizer_model="bundled:smollm2-135m"))
    assert (trainer.vocab_size, trainer.eod, trainer.model_path) == (49152, 2, folder)
    with pytest.raises(ValueError, match="use --tokenizer-type HuggingFaceTokenizer"):
        build_tokenizer("SentencePieceTokenizer", "bundled:smollm2-135m")
    with pytest.raises(ValueError, match="use --tokenizer-type SentencePieceTokenizer"):
        build_tokenizer("HuggingFaceTokenizer", "bundled:mistral-v3")
    with pytest.raises(ValueError, match="unknown bundled tokenizer.*bundled:smollm2-135m"):
        build_tokenizer("HuggingFaceTokenizer", "bundled:llama-9")


@pytest.mark.parametrize("typecode", ["H", "i"])  # uint16 and int32 datasets
def test_bounded_cache_is_emptied_and_refilled_exactly(monkeypatch, typecode):
    """A cache at its limit is emptied mid-run; texts that hit it, missed it, or came after the
    clearing all keep the library's ids, in either token dtype's bytes."""
    from megatron_telecom.data import word_cache

    monkeypatch.setattr(word_cache, "CACHE_LIMIT", 40)
    tokenizer = build_tokenizer("HuggingFaceTokenizer", FIXTURE)
    tokenizer.typecode = typecode
    texts = fuzz_texts(5, 240, ASCII_PIECES)
    for start in range(0, len(texts), 6):
        batch = texts[start:start + 6]
        assert tokenizer.tokenize_batch(batch) == library_ids(tokenizer, batch)
        assert len(tokenizer._cache) <= 40 + sum(len(w or ()) for w in map(tokenizer._splitter.split, batch))
