"""evaluate.py without --output (as lm-eval's --output_path, optional): the scores are printed, nothing is written.

Real TeleQnA (the authors' encrypted zip, found where the CLI looks by default: ../shared beside the checkout) scored by a tiny real HF model; with --output
the same table is printed and the results file holds it, as before.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from megatron_telecom.evaluation.results import accuracy_table, read_results
from megatron_telecom.evaluation.teleqna import DEFAULT_DATA

REPO = Path(__file__).resolve().parents[1]
evaluate_main = runpy.run_path(str(REPO / "tools" / "evaluate.py"))["main"]


def test_teleqna_prints_its_table_without_output_and_writes_it_with(tmp_path, monkeypatch, capsys,
                                                                     evaluation_tiny_model):
    if not DEFAULT_DATA.is_file():
        pytest.skip(f"real TeleQnA not found at {DEFAULT_DATA} (../shared/data/teleqna)")
    monkeypatch.chdir(tmp_path)
    argv = ["teleqna", "--model", str(evaluation_tiny_model), "--limit", "5"]  # the default data: the real zip
    assert evaluate_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["category", "n", "acc", "%", "acc_norm", "%", "random", "%",
                                               "majority", "%"]
    assert any(line.startswith("overall ") and line.split()[1] == "5" for line in printed.splitlines())
    assert list(tmp_path.iterdir()) == []  # nothing written without --output
    assert evaluate_main([*argv, "--output", "r.json"]) == 0
    assert capsys.readouterr().out == printed
    assert accuracy_table(read_results(tmp_path / "r.json")["teleqna"]["options-0shot"]) + "\n" == printed


def test_perplexity_prints_its_table_without_output(tmp_path, monkeypatch, capsys, evaluation_tiny_model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doc.txt").write_text("The AMF handles registration and mobility in the 5G core. " * 4)
    assert evaluate_main(["perplexity", "--model", str(evaluation_tiny_model), "--input", "doc.txt",
                          "--seq-length", "32"]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["input", "tokens", "bytes", "perplexity", "bits/byte"] and row.startswith("doc.txt ")
    assert [p.name for p in tmp_path.iterdir()] == ["doc.txt"]
