"""Vocabulary mining and tokenizer extension on real tokenizers (SmolLM2's byte-level BPE, a
Llama-3-style Split pipeline, Mistral's SentencePiece), checked against the libraries themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from test_tokenizers import fuzz_texts as sentencepiece_fuzz
from test_word_cache import byte_level as byte_level_step
from test_word_cache import derived_tokenizer, fuzz_texts, sequence, split

from megatron_telecom.data.heldout import is_heldout
from megatron_telecom.data.indexed import read_document, read_index
from megatron_telecom.data.tokenizers import TokenizerConfig, build_tokenizer
from megatron_telecom.data.vocab_extension import SIDECAR, ExtendTokenizerConfig, extend_tokenizer
from megatron_telecom.data.vocab_mining import MineVocabularyConfig, mine_vocabulary
from megatron_telecom.data.vocab_units import token_units
from megatron_telecom.data.word_cache import LLAMA3_PATTERN

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"
RFC_DIR = REPO.parent / "shared" / "data" / "rfc"
SMOLLM2 = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model="bundled:smollm2-135m")
MISTRAL = TokenizerConfig(tokenizer_type="SentencePieceTokenizer", tokenizer_model="bundled:mistral-v1")
TERMS = "The gNB-CU-CP sends RRCReconfiguration on the PDCCH to each UE of the NG-RAN (SS/PBCH, NR-ARFCN)."


def library_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    if tokenizer.tokenizer_type == "HuggingFaceTokenizer":
        return [e.ids for e in tokenizer._backend.encode_batch(texts, add_special_tokens=False)]
    return spm.SentencePieceProcessor(model_file=str(tokenizer.model_path)).encode(texts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The project's telecom sample plus 12 documents that repeat hyphenated telecom terms."""
    path = tmp_path_factory.mktemp("vocab_corpus") / "corpus.jsonl"
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    records += [{"id": f"terms-{i}", "text": " ".join([TERMS] * 6)} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def mine(corpus: Path, out: Path, tokenizer: TokenizerConfig, **flags) -> dict:
    mine_vocabulary(MineVocabularyConfig(input=[str(corpus)], output_dir=str(out), tokenizer=tokenizer, **flags))
    return json.loads((out / "candidates.json").read_text(encoding="utf-8"))


def extend(candidates: Path, out: Path, tokenizer: TokenizerConfig, num_tokens: int) -> dict:
    return extend_tokenizer(ExtendTokenizerConfig(candidates=str(candidates), num_tokens=num_tokens,
                                                  output=str(out), tokenizer=tokenizer))


@pytest.fixture(scope="module")
def smollm2(corpus, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("vocab_smollm2")
    mined = mine(corpus, root / "mined", SMOLLM2)
    sidecar = extend(root / "mined", root / "extended", SMOLLM2, 48)
    return {"root": root, "mined": mined, "sidecar": sidecar, "old": build_tokenizer("HuggingFaceTokenizer", "bundled:smollm2-135m"),
            "new": build_tokenizer("HuggingFaceTokenizer", root / "extended")}


def test_mining_is_deterministic_reads_only_training_documents_and_skips_by_rule(corpus, smollm2, tmp_path):
    mined = smollm2["mined"]
    again = mine(corpus, tmp_path / "again", SMOLLM2)
    for name in ("candidates.json", "candidates.tsv"):
        assert (tmp_path / "again" / name).read_bytes() == (smollm2["root"] / "mined" / name).read_bytes()
    ids = [json.loads(line)["id"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    held = sum(is_heldout(i, 0.1) for i in ids)
    assert 0 < held and mined["stats"]["documents"] == len(ids) - held == again["stats"]["documents"]
    texts = {c["text"]: c for c in mined["candidates"]}
    assert " PDCCH" in texts and texts[" PDCCH"]["saving"] == texts[" PDCCH"]["count"] * (len(texts[" PDCCH"]["pieces"]) - 1)
    assert all(len(c["pieces"]) > 1 and c["count"] >= 5 for c in mined["candidates"])
    savings = [(-c["saving"], c["token"]) for c in mined["candidates"]]
    assert savings == sorted(savings)
    skipped = mined["stats"]["skipped_examples"]
    assert " the" in {e["text"] for e in skipped["already one token"]} and " the" not in texts
    assert "gNB-CU-CP" in {e["text"] for e in skipped["split by the pre-tokenizer"]}  # GPT-2's regex cuts at '-'
    # bounded memory: a tiny counter drops the rarest strings, deterministically, and says by how much
    small = mine(corpus, tmp_path / "small", SMOLLM2, max_distinct=300)
    assert small["stats"]["pruned_below"] > 0 and " PDCCH" in {c["text"] for c in small["candidates"]}


def test_extended_smollm2_keeps_old_ids_and_makes_each_term_one_token(smollm2):
    old, new, sidecar = smollm2["old"], smollm2["new"], smollm2["sidecar"]
    added = sidecar["added"]
    assert (new.vocab_size, new.eod, new.bos) == (old.vocab_size + 48, old.eod, old.bos)
    assert [a["id"] for a in added] == list(range(old.vocab_size, old.vocab_size + 48))
    assert sidecar["base"]["sha256"] != sidecar["extended"]["sha256"] and new.fast_path_note is None
    for a in added:  # the checkpoint side's init: old.tokenize(new.detokenize([id])) == pieces
        assert a["text"] == new.detokenize([a["id"]]) and a["pieces"] == old.tokenize(a["text"])
        assert old.detokenize(a["pieces"]) == a["text"]
    terms = [a for a in added if a["role"] == "term"]
    assert terms and all(new.tokenize(a["text"]) == [a["id"]] for a in terms)
    assert new.tokenize(" PDCCH") == [next(a["id"] for a in terms if a["text"] == " PDCCH")]
    # chat template, special tokens and added tokens unchanged
    chat = [{"role": "user", "content": "What is a PDCCH?"}, {"role": "assistant", "content": "A channel."}]
    assert new._hf.apply_chat_template(chat, tokenize=False) == old._hf.apply_chat_template(chat, tokenize=False)
    assert new._hf.all_special_tokens == old._hf.all_special_tokens
    assert new._hf.added_tokens_decoder == old._hf.added_tokens_decoder


def assert_old_ids_unless_a_new_string(old, new, added: list[dict], texts: list[str]) -> None:
    """Word by word: the new ids equal the old ones unless the word holds an added token's string;
    whole texts holding none are identical; and the word cache equals the library on the new tokenizer."""
    units, new_units = token_units(old), token_units(new)
    strings = [a["token"] for a in added]
    old_ids, new_ids = old.tokenize_batch(texts), new.tokenize_batch(texts)
    assert new_ids == library_ids(new, texts)
    changed = 0
    for text, before, after in zip(texts, old_ids, new_ids):
        holds = any(a["text"].strip() in text for a in added)
        if not holds:
            assert before == after, text
        for unit in dict.fromkeys(units.units(text)):
            if new_units.pieces(unit) != units.pieces(unit):
                changed += 1
                assert any(s in units.token_string(unit) for s in strings), unit
    assert changed or not any(a["text"].strip() in t for t in texts for a in added)


def test_old_ids_unchanged_on_fuzz_and_rfc_text(smollm2):
    texts = fuzz_texts(7, 1500)
    if RFC_DIR.is_dir():
        texts += [p.read_bytes().decode("utf-8")[:30000] for p in sorted(RFC_DIR.glob("*.txt"))[:6]]
    texts += [TERMS]
    assert_old_ids_unless_a_new_string(smollm2["old"], smollm2["new"], smollm2["sidecar"]["added"], texts)


def test_llama3_split_tokenizer_skips_what_its_regex_cuts(corpus, tmp_path):
    folder = derived_tokenizer(tmp_path, "llama3", pre_tokenizer=sequence(split(LLAMA3_PATTERN), byte_level_step(False)))
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["model"]["ignore_merges"] = True  # as in Llama-3's tokenizer.json: a whole pre-token in the vocabulary wins
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    config = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(folder))
    mined = mine(corpus, tmp_path / "mined", config, heldout_fraction=0.0)
    assert "gNB-CU-CP" in {e["text"] for e in mined["stats"]["skipped_examples"]["split by the pre-tokenizer"]}
    texts = {c["text"] for c in mined["candidates"]}
    assert "-CU" in texts or "-CP" in texts  # Llama-3's pre-token: one punctuation mark + letters
    sidecar = extend(tmp_path / "mined", tmp_path / "extended", config, 32)
    old, new = build_tokenizer("HuggingFaceTokenizer", folder), build_tokenizer("HuggingFaceTokenizer", tmp_path / "extended")
    assert new.fast_path_note is None and new.vocab_size == old.vocab_size + 32
    assert_old_ids_unless_a_new_string(old, new, sidecar["added"], fuzz_texts(9, 800) + [TERMS])


def test_sentencepiece_extension_keeps_old_ids(corpus, tmp_path):
    mined = mine(corpus, tmp_path / "mined", MISTRAL)
    assert "gNB-CU-CP" in {c["text"] for c in mined["candidates"]}  # SentencePiece does not cut at '-'
    sidecar = extend(tmp_path / "mined", tmp_path / "extended", MISTRAL, 40)
    old = build_tokenizer("SentencePieceTokenizer", "bundled:mistral-v1")
    new = build_tokenizer("SentencePieceTokenizer", tmp_path / "extended" / "tokenizer.model")
    assert (new.vocab_size, new.eod, new.bos, new.fast_path_note) == (old.vocab_size + 40, old.eod, old.bos, None)
    terms = [a for a in sidecar["added"] if a["role"] == "term"]
    assert terms and all(new.tokenize(a["text"]) == [a["id"]] for a in terms)
    assert all(a["pieces"] == old.tokenize(new.detokenize([a["id"]])) for a in sidecar["added"])
    texts = sentencepiece_fuzz(0, 1500) + [TERMS]
    assert_old_ids_unless_a_new_string(old, new, sidecar["added"], texts)


def _tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_preprocess_tools_accept_the_extended_folder(smollm2, corpus, tmp_path, capsys):
    folder = str(smollm2["root"] / "extended")
    tokenizer_flags = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", folder]
    records = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()][-14:]
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert _tool("preprocess_data")(["--input", str(small), "--output-prefix", str(tmp_path / "cpt"),
                                     "--append-eod", "--workers", "1", *tokenizer_flags]) == 0
    prefix = tmp_path / "cpt_text_document"
    index = read_index(prefix)
    new = smollm2["new"]
    expected = [ids + [new.eod] for ids in library_ids(new, [r["text"] for r in records])]
    assert [read_document(prefix, index, d).tolist() for d in range(index.num_documents)] == expected
    assert max(max(e) for e in expected) >= smollm2["old"].vocab_size  # new ids are in there
    chat = {"messages": [{"role": "user", "content": "What does the PDCCH carry?"},
                         {"role": "assistant", "content": "Downlink control information for the UE."}]}
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps(chat) + "\n", encoding="utf-8")
    assert _tool("preprocess_sft")(["--input", str(sft), "--output-prefix", str(tmp_path / "sft"),
                                    "--seq-length", "256", *tokenizer_flags]) == 0
    tokens = read_document(tmp_path / "sft_tokens", read_index(tmp_path / "sft_tokens"), 0)
    rendered = new._hf.apply_chat_template(chat["messages"], tokenize=False)
    assert np.array_equal(tokens[:len(new.tokenize(rendered))], new._hf(rendered, add_special_tokens=False)["input_ids"])


def test_errors_are_one_line(smollm2, tmp_path, capsys):
    extend_main, mine_main = _tool("extend_tokenizer"), _tool("mine_vocabulary")
    mined = str(smollm2["root"] / "mined")
    base = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", "bundled:smollm2-135m"]
    cases = [
        (extend_main, ["--candidates", str(tmp_path / "nowhere"), "--num-tokens", "8", "--output", str(tmp_path / "a"), *base],
         "does not exist"),
        (extend_main, ["--candidates", mined, "--num-tokens", "100000", "--output", str(tmp_path / "b"), *base],
         "more than the"),
        (extend_main, ["--candidates", mined, "--num-tokens", "8", "--output", str(tmp_path / "c"),
                       "--tokenizer-type", "NullTokenizer", "--vocab-size", "10"], "no vocabulary to extend"),
        (extend_main, ["--candidates", mined, "--num-tokens", "8", "--output", str(tmp_path / "d"),
                       "--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", "bundled:mistral-v1"],
         "mined with another tokenizer"),
        (extend_main, ["--candidates", mined, "--num-tokens", "8", "--output", str(smollm2["root"] / "extended"), *base],
         "already exists"),
        (mine_main, ["--input", str(tmp_path / "none.jsonl"), "--output-dir", str(tmp_path / "e"), *base], "matches no file"),
        (mine_main, ["--input", mined + "/candidates.json", "--output-dir", str(tmp_path / "f"),
                     "--tokenizer-type", "NullTokenizer", "--vocab-size", "10"], "no vocabulary to extend"),
    ]
    for main, argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err, err
    assert not any(p.name in "abcd" for p in tmp_path.iterdir())
    assert (smollm2["root"] / "extended" / SIDECAR).is_file()
