"""tools/preprocess_data.py: flags, bad input, strictness, atomic outputs, provenance, formats."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_telecom.arguments import parse_args
from megatron_telecom.data.indexed import read_index
from megatron_telecom.data.preprocess import PreprocessConfig, preprocess
from megatron_telecom.data.sentence_splitter import SentenceSplitter
from megatron_telecom.data.tokenizers import (
    TokenizerConfig,
    build_tokenizer,
    bundled_tokenizer_model,
)

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "preprocess_data.py"
SP_MODEL = str(bundled_tokenizer_model("mistral-v1"))

DOCS = [
    "The gNB schedules PDSCH transmissions every slot.",
    "5G NR uses LDPC codes for data channels and polar codes for control channels.",
    "The AMF handles registration; the SMF handles PDU sessions (see TS 23.502).",
]


def write_jsonl(path: Path, records: list, raw_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        for line in raw_lines:
            f.write(line + b"\n")
    return path


def run_tool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOOL), "--tokenizer-type", "SentencePieceTokenizer",
           "--tokenizer-model", SP_MODEL, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def config(tmp_path: Path, inputs: list[Path], **overrides) -> PreprocessConfig:
    values = dict(input=[str(p) for p in inputs], output_prefix=str(tmp_path / "out"), workers=1,
                  tokenizer=TokenizerConfig(tokenizer_type="SentencePieceTokenizer", tokenizer_model=SP_MODEL))
    values.update(overrides)
    return PreprocessConfig(**values)


def test_documents_match_tokenizer_and_megatron_reads_them(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in DOCS])
    result = preprocess(config(tmp_path, [src], append_eod=True))
    tokenizer = build_tokenizer("SentencePieceTokenizer", SP_MODEL)
    dataset = IndexedDataset(result.datasets["text"])
    assert len(dataset) == len(DOCS)
    for i, text in enumerate(DOCS):
        assert dataset[i].tolist() == tokenizer.tokenize(text) + [tokenizer.eod]
    assert dataset[0].dtype == np.uint16


def test_workers_and_batching_do_not_change_bytes(tmp_path):
    records = [{"text": f"{DOCS[i % 3]} Document number {i}."} for i in range(500)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    outputs = []
    for workers, batch_bytes in [(1, 1 << 20), (2, 200), (3, 10_000)]:
        prefix = tmp_path / f"w{workers}"
        preprocess(config(tmp_path, [src], workers=workers, batch_bytes=batch_bytes, output_prefix=str(prefix)))
        outputs.append(tuple((Path(f"{prefix}_text_document{s}")).read_bytes() for s in (".bin", ".idx")))
    assert outputs[0] == outputs[1] == outputs[2]


def test_several_json_keys_each_finalized(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"title": f"T{i}", "text": t} for i, t in enumerate(DOCS)])
    result = preprocess(config(tmp_path, [src], json_keys=("text", "title")))
    assert set(result.datasets) == {"text", "title"}
    for key in ("text", "title"):
        assert IndexedDataset(result.datasets[key]).index.sequence_count == len(DOCS)


def test_inputs_glob_gzip_and_json_array(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": DOCS[0]}])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": DOCS[1]}) + "\n")
    (tmp_path / "c.json").write_text(json.dumps([{"text": DOCS[2]}]), encoding="utf-8")
    result = preprocess(config(tmp_path, [str(tmp_path / "*.json*")]))
    tokenizer = build_tokenizer("SentencePieceTokenizer", SP_MODEL)
    dataset = IndexedDataset(result.datasets["text"])
    assert [dataset[i].tolist() for i in range(3)] == [tokenizer.tokenize(t) for t in DOCS]
    provenance = json.loads(Path(result.datasets["text"] + ".json").read_text())
    assert [Path(i["path"]).name for i in provenance["inputs"]] == ["a.jsonl", "b.jsonl.gz", "c.json"]
    import hashlib

    assert provenance["inputs"][1]["sha256"] == hashlib.sha256((tmp_path / "b.jsonl.gz").read_bytes()).hexdigest()


BAD_LINES = [
    b'{"text": "broken json',  # line 2
    b'{"body": "no text key"}',  # 3
    b'{"text": 42}',  # 4
    b'{"text": "bad utf-8 \xff\xfe here"}',  # 5
    b'{"text": ""}',  # 6
    b'["a", "list"]',  # 7
]


def test_bad_records_skipped_counted_and_reported(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": DOCS[0]}], raw_lines=[*BAD_LINES, b"", b'{"text": "ok again"}'])
    result = run_tool("--input", str(src), "--output-prefix", str(tmp_path / "out"), "--workers", "1")
    assert "Skipped 6 bad records" in result.stdout
    for reason, line in [("invalid_json", 2), ("missing_key", 3), ("non_string", 4), ("invalid_utf8", 5),
                         ("empty_text", 6), ("not_an_object", 7)]:
        assert f"{reason}: 1 (e.g. {src}:{line})" in result.stdout
    assert read_index(tmp_path / "out_text_document").num_documents == 2
    provenance = json.loads((tmp_path / "out_text_document.json").read_text())
    assert provenance["skipped"]["total"] == 6
    assert provenance["dataset"]["documents"] == 2
    assert provenance["tokenizer"]["vocab_size"] == 32000


def test_strict_stops_at_first_bad_record_and_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": DOCS[0]}], raw_lines=BAD_LINES[1:])
    result = run_tool("--input", str(src), "--output-prefix", str(tmp_path / "out"), "--workers", "2",
                      "--strict", check=False)
    assert result.returncode == 1
    assert f"{src}:2: missing_key" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_bad_paths_and_flags_give_clear_errors(tmp_path):
    result = run_tool("--input", str(tmp_path / "nope*.jsonl"), "--output-prefix", str(tmp_path / "o"),
                      "--workers", "1", check=False)
    assert result.returncode == 2 and "matches no file" in result.stderr
    with pytest.raises(ValueError, match="does not exist"):
        build_tokenizer("SentencePieceTokenizer", tmp_path / "missing.model")
    with pytest.raises(ValueError, match="unsupported --tokenizer-type"):
        build_tokenizer("BertWordPieceCase", SP_MODEL)
    with pytest.raises(ValueError, match="--workers"):
        config(tmp_path, [], workers=0)


def test_megatron_lm_flags_fill_the_config():
    """Megatron-LM's invocation (incl. its compatibility flags) parses; the required flags stay required."""
    base = ["--input", "a.jsonl", "--output-prefix", "o"]
    parsed = parse_args(PreprocessConfig, [*base, "--workers", "2", "--tokenizer-type", "NullTokenizer",
                                           "--vocab-size", "10", "--json-keys", "text", "title",
                                           "--partitions", "2", "--keep-sequential-samples", "--append-eod"])
    assert parsed.json_keys == ("text", "title") and parsed.workers == 2 and parsed.append_eod
    assert parsed.tokenizer == TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=10)
    with pytest.raises(ValueError, match="--tokenizer-type is required"):
        parse_args(PreprocessConfig, [*base, "--workers", "1"])
    with pytest.raises(ValueError, match="--workers is required"):
        parse_args(PreprocessConfig, [*base, "--tokenizer-type", "NullTokenizer"])


def test_failed_run_keeps_previous_dataset(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": t} for t in DOCS])
    preprocess(config(tmp_path, [good]))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("out_*")}
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}], raw_lines=[b"{oops"])
    with pytest.raises(ValueError, match="invalid_json"):
        preprocess(config(tmp_path, [bad], strict=True))
    after = {p.name: p.read_bytes() for p in tmp_path.glob("out_*")}
    assert after == before
    assert not list(tmp_path.glob(".*tmp*"))


def test_huge_single_document(tmp_path):
    paragraph = "The UPF forwards user-plane packets between the RAN and the data network. "
    text = paragraph * (50_000_000 // len(paragraph))
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": DOCS[0]}, {"text": text}, {"text": DOCS[1]}])
    result = preprocess(config(tmp_path, [src], workers=2, append_eod=True))
    lengths = read_index(result.datasets["text"]).document_lengths()
    assert len(lengths) == 3 and lengths[1] > 5_000_000


def test_split_sentences_telecom_abbreviations(tmp_path):
    splitter = SentenceSplitter(use_nltk_data=False)
    text = ("The UE shall send the RRC Setup Request (see TS 38.331 cl. 5.3.3) to the gNB. "
            "E.g. the T300 timer starts.")
    assert splitter.split(text) == [
        "The UE shall send the RRC Setup Request (see TS 38.331 cl. 5.3.3) to the gNB.",
        "E.g. the T300 timer starts.",
    ]
    more = ("Fig. 4 shows the split, cf. Sec. 6.1 and Eq. 3, i.e. the DU hosts RLC. "
            "Rel. 17 added No. 12 of the list. The CU hosts PDCP.")
    assert len(splitter.split(more)) == 3
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": text}])
    result = preprocess(config(tmp_path, [src], split_sentences=True, append_eod=True))
    index = read_index(result.datasets["text"])
    assert result.datasets["text"].endswith("_text_sentence")
    assert len(index.sequence_lengths) == 2 and index.num_documents == 1
    tokenizer = build_tokenizer("SentencePieceTokenizer", SP_MODEL)
    first, second = splitter.split(text)
    assert index.sequence_lengths.tolist() == [len(tokenizer.tokenize(first)), len(tokenizer.tokenize(second)) + 1]


def test_keep_newlines_keeps_paragraph_breaks():
    text = "First sentence.\n\nSecond one here. Third."
    sentences = SentenceSplitter(use_nltk_data=False, keep_newlines=True).split(text)
    assert "".join(sentences) == text
    assert len(sentences) == 3
