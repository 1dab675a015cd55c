"""evaluate.py / generate.py flags: the documented command lines parse, bad values fail before torch."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from megatron_telecom.arguments import parse_args, parse_command
from megatron_telecom.evaluation.accuracy import ChoiceScoringConfig, Mode
from megatron_telecom.evaluation.cli import EVALUATE_COMMANDS, GenerateConfig
from megatron_telecom.evaluation.questions import PROMPT_TEMPLATES

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def run_tool(tool: str, *argv: str) -> subprocess.CompletedProcess:
    """Run a tool's main in a fresh interpreter; stdout's last line lists the heavy modules imported."""
    code = ("import runpy, sys\n"
            f"rc = runpy.run_path({str(TOOLS / tool)!r})['main'](sys.argv[1:])\n"
            "print(sorted(m for m in ('torch', 'transformers', 'megatron') if m in sys.modules))\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


def test_readme_command_lines_parse():
    name, ppl = parse_command(EVALUATE_COMMANDS, [
        "perplexity", "--model", "runs/cpt", "--input", "heldout.jsonl", "rfc9293.txt", "data/x_text_document",
        "--output", "trained.json"])
    assert (ppl.source.model, ppl.source.dtype, ppl.input) == (
        "runs/cpt", None, ["heldout.jsonl", "rfc9293.txt", "data/x_text_document"])
    assert (ppl.seq_length, ppl.stride, ppl.tokens_per_batch, ppl.output) == (2048, None, 8192, "trained.json")
    _, qna = parse_command(EVALUATE_COMMANDS, [
        "teleqna", "--model", "M", "--limit", "1000", "--mode", "letter", "--shots", "2", "--num-shards", "8",
        "--shard-index", "7", "--dtype", "bfloat16", "--output", "s7.json"])
    assert qna.scoring == ChoiceScoringConfig(mode="letter", shots=2, limit=1000, num_shards=8, shard_index=7)
    assert (qna.scoring.name, qna.scoring.tokens_per_batch, qna.data, qna.source.dtype) == (
        "letter-2shot", None, None, "bfloat16")
    _, merge = parse_command(EVALUATE_COMMANDS, ["merge", "s0.json", "s1.json", "--output", "R.json"])
    assert (merge.shards, merge.output) == (["s0.json", "s1.json"], "R.json")
    _, cmp = parse_command(EVALUATE_COMMANDS, ["compare", "base.json", "trained.json", "--labels", "base",
                                               "trained", "--output-dir", "cmp/"])
    assert (cmp.results, cmp.labels, cmp.output_dir) == (["base.json", "trained.json"], ["base", "trained"], "cmp/")
    gen = parse_args(GenerateConfig, ["--model", "runs/cpt", "The T300 timer", "--max-new-tokens", "40",
                                      "--temperature", "0.8", "--top-p", "0.9", "--seed", "1"])
    assert (gen.source.model, gen.prompt, gen.max_new_tokens, gen.temperature, gen.top_p, gen.seed) == (
        "runs/cpt", "The T300 timer", 40, 0.8, 0.9, 1)


def test_modes_are_the_prompt_templates():
    assert typing.get_args(Mode) == tuple(PROMPT_TEMPLATES)


@pytest.mark.parametrize("argv, message", [
    (["--shots", "-1"], "--shots -1: give 0 or more"),
    (["--num-shards", "3", "--shard-index", "3"], "--shard-index 3: must be in [0, --num-shards=3)"),
    (["--tokens-per-batch", "0"], "--tokens-per-batch 0: give at least 1"),
])
def test_bad_teleqna_settings_are_refused_naming_the_flag(argv, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_command(EVALUATE_COMMANDS, ["teleqna", "--model", "M", "--output", "r.json", *argv])


@pytest.mark.parametrize("tool, argv, message", [
    ("evaluate.py", ["teleqna", "--model", "M", "--mode", "letters", "--output", "r.json"],
     "--mode 'letters': choose one of options, letter"),
    ("evaluate.py", ["perplexity", "--model", "M", "--input", "x.jsonl", "--dtype", "fp16", "--output", "r.json"],
     "--dtype 'fp16': choose one of float32, bfloat16, float16"),
    ("evaluate.py", ["merge", "--output", "r.json"], "the SHARDS argument is required"),
    ("evaluate.py", ["perplexity", "--model", "M", "--input", "--output", "r.json"], "--input: give at least one"),
    ("evaluate.py", ["score", "--model", "M"], "unknown command 'score'"),
    ("generate.py", ["--model", "M"], "the PROMPT argument is required"),
])
def test_bad_flags_exit_2_before_torch_is_imported(tool, argv, message):
    proc = run_tool(tool, *argv)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_help_lists_each_commands_flags():
    proc = run_tool("evaluate.py", "teleqna", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--model", "--dtype", "--data", "--mode {options,letter}", "--tokens-per-batch", "--output"):
        assert flag in proc.stdout
    assert "None: 2048 on CPU, 32768 on GPU" in proc.stdout
