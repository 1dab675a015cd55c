"""Loss curves from the trainer's metrics JSONL: last record of an iteration wins, PNG written."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from megatron_telecom.training.loss_curves import plot_loss_curves, read_loss_curves

TOOL = Path(__file__).resolve().parents[1] / "tools" / "plot_loss_curves.py"


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n", encoding="utf-8")


def test_curves_take_the_last_record_of_a_resumed_iteration_and_plot(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    _write(metrics, [
        {"iteration": 1, "lm_loss": 4.0}, {"iteration": 2, "lm_loss": 3.8},
        {"iteration": 2, "validation": {"telecom": 3.9, "general": 2.5}},
        {"iteration": 2, "lm_loss": 3.7},  # after a resume from iteration 1
        {"iteration": 3, "lm_loss": 3.5}, {"iteration": 3, "validation": {"telecom": 3.6, "general": 2.4}},
    ])
    train, valid = read_loss_curves(metrics)
    assert train == {1: 4.0, 2: 3.7, 3: 3.5}
    assert valid == {"telecom": {2: 3.9, 3: 3.6}, "general": {2: 2.5, 3: 2.4}}
    png = tmp_path / "out" / "loss.png"
    assert plot_loss_curves(metrics, png, "run") == (train, valid)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["loss.png"]


def test_bad_metrics_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_loss_curves(tmp_path / "missing.jsonl")
    empty = tmp_path / "valid_only.jsonl"
    _write(empty, [{"iteration": 5, "validation": {"telecom": 3.0}}])
    with pytest.raises(ValueError, match="no training iterations"):
        read_loss_curves(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"iteration": 1, "lm_loss": 4.0}\n{"iteration": 2,\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl:2"):
        read_loss_curves(broken)


def test_tool_plots_and_prints_each_curve(tmp_path, capsys):
    metrics = tmp_path / "metrics.jsonl"
    _write(metrics, [{"iteration": 1, "lm_loss": 4.0}, {"iteration": 2, "lm_loss": 3.5},
                     {"iteration": 2, "validation": {"telecom": 3.6}}])
    main = runpy.run_path(str(TOOL))["main"]
    assert main([str(metrics), "--output", str(tmp_path / "loss.png"), "--title", "run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "train lm loss 4.000 (iteration 1) -> 3.500 (iteration 2)",
        "validation telecom: 3.600 (iteration 2) -> 3.600 (iteration 2)",
        f"loss curves -> {tmp_path / 'loss.png'}"]
    assert main([str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--output", str(tmp_path / "x.png")]) == 2
    assert "the METRICS argument is required" in capsys.readouterr().err
