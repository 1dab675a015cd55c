"""A megatron checkpoint as a model source: exported once (cached), same perplexity as its HF model."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from megatron_telecom.evaluation.model_source import export_cache_path, resolve_model_path
from megatron_telecom.evaluation.results import read_results

evaluate_main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "evaluate.py"))["main"]

TEXT = "The AMF selects an SMF for the PDU session and forwards the N1 SM container to it. " * 4


@pytest.fixture(scope="module")
def checkpoint(evaluation_tiny_model, tmp_path_factory):
    """The tiny HF model converted to a megatron checkpoint at PP=2 (subprocess: the CPU shim is global)."""
    from _dist_helpers import REPO, run_subprocess, subprocess_env

    save = tmp_path_factory.mktemp("evaluation_ckpt") / "tiny-pp2"
    script = ("import sys\nfrom megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore\n"
              "convert_hf_to_mcore(sys.argv[1], sys.argv[2], target_pipeline_model_parallel_size=2)\n")
    proc = run_subprocess([sys.executable, "-c", script, str(evaluation_tiny_model), str(save)],
                          env=subprocess_env(), timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return save


def test_checkpoint_perplexity_equals_its_hf_model(tmp_path, monkeypatch, checkpoint, evaluation_tiny_model):
    monkeypatch.setenv("MEGATRON_TELECOM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "held_out.jsonl").write_text(json.dumps({"text": TEXT}) + "\n")
    figures = {}
    for name, model in [("ckpt", checkpoint), ("hf", evaluation_tiny_model)]:
        out = tmp_path / f"{name}.json"
        assert evaluate_main(["perplexity", "--model", str(model), "--input", str(tmp_path / "held_out.jsonl"),
                              "--seq-length", "64", "--output", str(out)]) == 0
        figures[name] = next(iter(read_results(out)["perplexity"].values()))
    assert figures["ckpt"]["tokens"] == figures["hf"]["tokens"]
    assert figures["ckpt"]["perplexity"] == pytest.approx(figures["hf"]["perplexity"], rel=1e-5)
    assert figures["ckpt"]["bits_per_byte"] == pytest.approx(figures["hf"]["bits_per_byte"], rel=1e-5)
    export = export_cache_path(checkpoint)
    assert export.parent == tmp_path / "cache" / "hf-exports" and (export / "config.json").is_file()
    stamp = (export / "config.json").stat().st_mtime_ns
    assert resolve_model_path(checkpoint) == export  # cached: not exported again
    assert (export / "config.json").stat().st_mtime_ns == stamp


def test_unknown_folder_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert evaluate_main(["perplexity", "--model", str(tmp_path / "empty"), "--input", "x.jsonl",
                          "--output", str(tmp_path / "r.json")]) == 2
    assert "neither an HF model folder" in capsys.readouterr().err


def test_checkpoint_generates_the_answers_of_its_hf_model(tmp_path, monkeypatch, checkpoint, evaluation_tiny_model):
    monkeypatch.setenv("MEGATRON_TELECOM_CACHE", str(tmp_path / "cache"))
    rows = [{"prompt": TEXT[:60], "references": ["an SMF"]}, {"prompt": "The AMF", "references": ["selects"]}]
    (tmp_path / "open.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {}
    for name, model in [("ckpt", checkpoint), ("hf", evaluation_tiny_model)]:
        samples = tmp_path / f"{name}.jsonl"
        assert evaluate_main(["open", "--model", str(model), "--data", str(tmp_path / "open.jsonl"),
                              "--max-new-tokens", "5", "--log-samples", str(samples)]) == 0
        answers[name] = [json.loads(line)["prediction"] for line in samples.read_text().splitlines()]
    assert answers["ckpt"] == answers["hf"] and all(answers["hf"])
