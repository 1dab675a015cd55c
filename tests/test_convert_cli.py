"""convert_checkpoint.py flags: the documented command lines parse, bad values fail before torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from megatron_telecom.arguments import parse_command
from megatron_telecom.convert.cli import COMMANDS

TOOL = Path(__file__).resolve().parents[1] / "tools" / "convert_checkpoint.py"


def test_readme_command_lines_parse():
    _, to_mcore = parse_command(COMMANDS, [
        "hf-to-mcore", "--hf-path", "bundled:smollm2-135m", "--save", "runs/m",
        "--target-tensor-parallel-size", "2", "--target-pipeline-model-parallel-size", "2"])
    assert (to_mcore.hf.hf_path, to_mcore.save, to_mcore.target_tensor_parallel_size,
            to_mcore.target_pipeline_model_parallel_size, to_mcore.make_vocab_size_divisible_by) == (
        "bundled:smollm2-135m", "runs/m", 2, 2, 128)
    _, to_hf = parse_command(COMMANDS, ["mcore-to-hf", "--load", "runs/t", "--save", "runs/t-hf"])
    assert (to_hf.checkpoint.load, to_hf.save, to_hf.dtype, to_hf.max_shard_size_mb) == ("runs/t", "runs/t-hf", "float32", 2048)
    _, check = parse_command(COMMANDS, ["verify", "--hf-path", "h", "--load", "m", "--tolerance", "1e-3"])
    assert (check.hf.hf_path, check.checkpoint.load, check.batch_size, check.seq_length,
            check.tolerance, check.seed) == ("h", "m", 2, 128, 1e-3, 1234)


@pytest.mark.parametrize("argv, message", [
    (["mcore-to-hf", "--load", "a", "--save", "b", "--dtype", "fp8"],
     "--dtype 'fp8': choose one of float32, bfloat16, float16"),
    (["hf-to-mcore", "--save", "b"], "--hf-path is required"),
    (["verify", "--hf-path", "h", "--load", "m", "--batch-size", "two"], "--batch-size: cannot read 'two' as int"),
])
def test_bad_flags_exit_2_before_torch_is_imported(argv, message):
    code = ("import runpy, sys\n"
            f"rc = runpy.run_path({str(TOOL)!r})['main'](sys.argv[1:])\n"
            "print(sorted(m for m in ('torch', 'megatron') if m in sys.modules))\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
