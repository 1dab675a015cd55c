"""Indexed-dataset writer/merge vs megatron-core's builder, inspect_data.py and data recipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from megatron_telecom.arguments import parse_args
from megatron_telecom.data.indexed import (
    IndexedDatasetWriter,
    MergeDatasetsConfig,
    merge_datasets,
    read_index,
    run_merge,
)
from megatron_telecom.data.inspection import InspectDataConfig, run_inspect
from megatron_telecom.data.recipe import load_data_recipe

REPO = Path(__file__).resolve().parents[1]


def random_documents(seed: int, count: int, vocab: int) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, vocab, rng.integers(1, 40)).tolist() for _ in range(rng.integers(1, 4))]
            for _ in range(count)]


def write_both(tmp_path: Path, name: str, docs: list, dtype) -> tuple[Path, Path]:
    ours = tmp_path / f"ours_{name}"
    writer = IndexedDatasetWriter(ours, dtype)
    theirs = tmp_path / f"theirs_{name}"
    builder = IndexedDatasetBuilder(f"{theirs}.bin", dtype=dtype)
    for doc in docs:
        flat = [t for seq in doc for t in seq]
        writer.add_document(np.array(flat, dtype=dtype), [len(s) for s in doc])
        builder.add_document(torch.tensor(flat, dtype=torch.int64), [len(s) for s in doc])
    writer.finalize()
    builder.finalize(f"{theirs}.idx")
    return ours, theirs


@pytest.mark.parametrize("dtype,vocab", [(np.uint16, 32000), (np.int32, 128256)])
def test_writer_bytes_equal_megatron_builder(tmp_path, dtype, vocab):
    ours, theirs = write_both(tmp_path, "a", random_documents(0, 50, vocab), dtype)
    for suffix in (".bin", ".idx"):
        assert Path(f"{ours}{suffix}").read_bytes() == Path(f"{theirs}{suffix}").read_bytes()
    assert read_index(ours).num_documents == 50


def test_merge_equals_megatron_add_index(tmp_path):
    a, ta = write_both(tmp_path, "a", random_documents(1, 20, 1000), np.uint16)
    b, tb = write_both(tmp_path, "b", random_documents(2, 30, 1000), np.uint16)
    merge_datasets([a, b], tmp_path / "merged")
    builder = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    builder.add_index(str(ta))
    builder.add_index(str(tb))
    builder.finalize(str(tmp_path / "ref.idx"))
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"merged{suffix}").read_bytes() == (tmp_path / f"ref{suffix}").read_bytes()
    assert IndexedDataset(str(tmp_path / "merged")).document_indices.shape == (51,)


def test_merge_tool_folder_and_errors(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    write_both(folder, "a", random_documents(3, 5, 100), np.uint16)
    cmd = [sys.executable, str(REPO / "tools" / "merge_datasets.py"), "--input", str(folder),
           "--output-prefix", str(tmp_path / "all")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert read_index(tmp_path / "all").num_documents == 10
    assert (tmp_path / "all.json").is_file()
    (folder / "orphan.bin").write_bytes(b"")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "orphan" in result.stderr
    mixed = tmp_path / "wide"
    IndexedDatasetWriter(mixed, np.int32).finalize()
    with pytest.raises(ValueError, match="int32"):
        merge_datasets([folder / "ours_a", mixed], tmp_path / "bad")
    assert not (tmp_path / "bad.idx").exists()


def test_merge_takes_exactly_one_of_folder_and_datasets(tmp_path, capsys):
    a, _ = write_both(tmp_path, "a", random_documents(4, 3, 100), np.uint16)
    b, _ = write_both(tmp_path, "b", random_documents(5, 4, 100), np.uint16)
    out = tmp_path / "ab"
    assert run_merge(parse_args(MergeDatasetsConfig, ["--datasets", str(b), str(a), "--output-prefix", str(out)])) == 0
    assert read_index(out).num_documents == 7 and "Merged 2 datasets" in capsys.readouterr().out
    for argv in ([], ["--input", str(tmp_path), "--datasets", str(a)]):
        with pytest.raises(ValueError, match="exactly one of --input FOLDER and --datasets"):
            parse_args(MergeDatasetsConfig, [*argv, "--output-prefix", str(out)])


def test_inspect_decodes_with_the_null_tokenizer(tmp_path, capsys):
    docs = [[[5, 6, 7]], [[8, 9]]]
    prefix, _ = write_both(tmp_path, "n", docs, np.uint16)
    argv = [str(prefix), "--tokenizer-type", "NullTokenizer", "--vocab-size", "100", "--samples", "2"]
    assert run_inspect(parse_args(InspectDataConfig, argv)) == 0
    printed = capsys.readouterr().out
    assert "documents  2" in printed and "5 6 7" in printed and "8 9" in printed


def test_read_index_rejects_foreign_files(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"")
    (tmp_path / "x.idx").write_bytes(b"not an index at all, really")
    with pytest.raises(ValueError, match="bad header"):
        read_index(tmp_path / "x")
    with pytest.raises(ValueError, match="no indexed dataset"):
        read_index(tmp_path / "missing")


def test_inspect_data_prints_counts_histogram_and_sample(tmp_path):
    sample = REPO / "examples" / "data" / "telecom_sample.jsonl"
    from megatron_telecom.data.tokenizers import bundled_tokenizer_model

    prep = [sys.executable, str(REPO / "tools" / "preprocess_data.py"), "--input", str(sample),
            "--output-prefix", str(tmp_path / "s"), "--workers", "1", "--tokenizer-type",
            "SentencePieceTokenizer", "--tokenizer-model", str(bundled_tokenizer_model("mistral-v1"))]
    assert subprocess.run(prep, capture_output=True, timeout=300).returncode == 0
    out = subprocess.run([sys.executable, str(REPO / "tools" / "inspect_data.py"), str(tmp_path / "s_text_document")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n_docs = sum(1 for _ in open(sample, encoding="utf-8"))
    assert f"documents  {n_docs:,}" in out.stdout
    assert "document length histogram" in out.stdout
    assert "--- document" in out.stdout  # decoded with the tokenizer named in the provenance file


def make_dataset(path: Path, tokens: int) -> str:
    writer = IndexedDatasetWriter(path, np.uint16)
    writer.add_document(np.ones(tokens, dtype=np.uint16), [tokens])
    writer.finalize()
    return path.name


def test_recipe_resolves_weights_shares_and_replay(tmp_path):
    make_dataset(tmp_path / "rfc", 1000)
    make_dataset(tmp_path / "spec", 3000)
    make_dataset(tmp_path / "wiki", 5000)
    (tmp_path / "recipe.yaml").write_text(
        "train_tokens: 10000\n"
        "datasets:\n  - {name: rfc, prefix: rfc}\n  - {name: spec, prefix: spec}\n"
        "replay:\n  share: 0.2\n  datasets:\n    - {prefix: wiki}\n")
    recipe = load_data_recipe(tmp_path / "recipe.yaml")
    weights = {e.name: e.weight for e in recipe.datasets}
    assert weights == pytest.approx({"rfc": 0.2, "spec": 0.6, "wiki": 0.2})  # natural 1:3 split of 0.8
    assert recipe.data_path() == ["0.2", str(tmp_path / "rfc"), "0.6", str(tmp_path / "spec"),
                                  "0.2", str(tmp_path / "wiki")]
    assert recipe.datasets[0].epochs(10000) == pytest.approx(2.0)
    table = recipe.accounting_table()
    assert "epochs" in table and "replay" in table

    (tmp_path / "r2.yaml").write_text(
        "datasets:\n  - {name: rfc, prefix: rfc, share: 0.5}\n  - {name: spec, prefix: spec, weight: 1}\n"
        "  - {name: wiki, prefix: wiki, weight: 4}\n")
    weights = {e.name: e.weight for e in load_data_recipe(tmp_path / "r2.yaml").datasets}
    assert weights == pytest.approx({"rfc": 0.5, "spec": 0.1, "wiki": 0.4})


@pytest.mark.parametrize("body,message", [
    ("datasets:\n  - {prefix: rfc, share: 0.7}\n  - {prefix: spec, share: 0.6}\n", "more than"),
    ("datasets:\n  - {prefix: rfc, weight: 1}\n  - {prefix: spec}\n", "to all entries"),
    ("datasets:\n  - {prefix: nope}\n", "no indexed dataset"),
    ("datasets:\n  - {prefix: rfc, wieght: 1}\n", "unknown keys"),
    ("replay: {share: 0.1}\n", "needs a 'datasets' list"),
    ("datasets:\n  - {prefix: rfc}\nreplay: {share: 0.1}\n", "lists no dataset"),
    ("datasets:\n  - {prefix: rfc}\nreplay: {datasets: [{prefix: spec}]}\n", "share is 0"),
])
def test_recipe_errors_say_what_to_fix(tmp_path, body, message):
    make_dataset(tmp_path / "rfc", 10)
    make_dataset(tmp_path / "spec", 10)
    (tmp_path / "r.yaml").write_text(body)
    with pytest.raises(ValueError, match=message):
        load_data_recipe(tmp_path / "r.yaml")


def test_data_recipe_tool_prints_data_path(tmp_path):
    make_dataset(tmp_path / "rfc", 10)
    (tmp_path / "r.yaml").write_text("datasets:\n  - {prefix: rfc}\n")
    out = subprocess.run([sys.executable, str(REPO / "tools" / "data_recipe.py"), str(tmp_path / "r.yaml"),
                          "--data-path-only"], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", str(tmp_path / "rfc")]
