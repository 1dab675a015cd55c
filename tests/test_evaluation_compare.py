"""compare: every metric side by side with differences, and a real PNG."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from megatron_telecom.evaluation.results import update_results

evaluate_main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "evaluate.py"))["main"]


def write_run(path, model, ppl, acc):
    update_results(path, model, "perplexity", {"rfc.txt": {"tokens": 10, "bytes": 40, "perplexity": ppl,
                                                           "bits_per_byte": ppl / 10}})
    category = {"n": 2, "acc": acc, "acc_norm": acc, "random": 0.25}
    update_results(path, model, "teleqna", {"options-0shot": {"overall": category,
                                                              "categories": {"Lexicon": category}}})


def test_compare_writes_table_with_differences_and_png(tmp_path, capsys):
    write_run(tmp_path / "base.json", "bundled:smollm2-135m", 20.0, 0.25)
    write_run(tmp_path / "trained.json", "runs/trained", 15.0, 0.75)
    out = tmp_path / "cmp"
    assert evaluate_main(["compare", str(tmp_path / "base.json"), str(tmp_path / "trained.json"),
                          "--labels", "base", "trained", "--output-dir", str(out)]) == 0
    table = (out / "comparison.txt").read_text()
    assert table in capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("perplexity/rfc.txt/perplexity"))
    assert row.split()[1:] == ["20.0000", "15.0000", "-5.0000"]
    row = next(line for line in table.splitlines() if line.startswith("teleqna/options-0shot/overall/acc "))
    assert row.split()[1:] == ["0.2500", "0.7500", "+0.5000"]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_file_holds_both_kinds_and_bad_inputs_are_refused(tmp_path, capsys):
    write_run(tmp_path / "base.json", "m", 20.0, 0.25)
    (tmp_path / "other.json").write_text("{}")
    argv = ["compare", str(tmp_path / "base.json"), str(tmp_path / "other.json"), "--output-dir", str(tmp_path)]
    assert evaluate_main(argv) == 2
    assert "not a results file" in capsys.readouterr().err
    assert evaluate_main([*argv[:2], "--labels", "a", "b", "--output-dir", str(tmp_path)]) == 2
    assert "2 labels for 1 results files" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [None, ["a"]])
def test_compare_of_a_single_run(tmp_path, labels):
    write_run(tmp_path / "base.json", "m", 20.0, 0.25)
    argv = ["compare", str(tmp_path / "base.json"), "--output-dir", str(tmp_path / "o")]
    assert evaluate_main(argv + (["--labels", *labels] if labels else [])) == 0


def test_plot_labels_tell_same_named_files_apart():
    from megatron_telecom.evaluation.compare import _short_names

    assert _short_names(["r/split/telecom/heldout.jsonl", "r/split/general/heldout.jsonl"]) == [
        "telecom/heldout.jsonl", "general/heldout.jsonl"]
    assert _short_names(["a/x.jsonl", "b/y.jsonl"]) == ["x.jsonl", "y.jsonl"]
