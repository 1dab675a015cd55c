"""hf -> mcore -> hf is bitwise, with an equivalent config; the CLI refuses bad input cleanly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from _convert_helpers import TINY_VARIANTS, copy_tokenizer, write_tiny_hf_model
from _dist_helpers import REPO, run_subprocess, subprocess_env
from safetensors.torch import load_file

from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.convert.hf_config import preset_from_hf_config

TOOL = [sys.executable, str(REPO / "tools" / "convert_checkpoint.py")]


def convert_tool(*args: str, timeout: float = 600):  # noqa: ANN201
    return run_subprocess([*TOOL, *map(str, args)], env=subprocess_env(), timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def exports(convert_checkpoints: dict[str, Path], tmp_path_factory) -> dict[str, Path]:
    """Every converted tiny checkpoint exported back by mcore-to-hf (one subprocess)."""
    base = tmp_path_factory.mktemp("convert_export")
    pairs = [(str(ckpt), str(base / name)) for name, ckpt in convert_checkpoints.items()]
    script = ("import json, sys\nfrom megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf\n"
              "for load, save in json.loads(sys.argv[1]):\n    export_mcore_to_hf(load, save)\n")
    proc = run_subprocess([sys.executable, "-c", script, json.dumps(pairs)], env=subprocess_env(),
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return {name: base / name for name in convert_checkpoints}


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_round_trip_is_bitwise_with_an_equivalent_config(variant, convert_hf_models, exports):
    source, export = convert_hf_models[variant], exports[variant]
    before, after = load_file(source / "model.safetensors"), load_file(export / "model.safetensors")
    assert sorted(before) == sorted(after)
    for name, tensor in before.items():
        assert after[name].dtype == tensor.dtype and after[name].shape == tensor.shape, name
        assert torch.equal(after[name].view(torch.uint8), tensor.view(torch.uint8)), name
    configs = [json.loads((folder / "config.json").read_text()) for folder in (source, export)]
    presets = [preset_from_hf_config(config, name=variant) for config in configs]
    assert presets[0] == presets[1]
    for key in ("bos_token_id", "eos_token_id", "tie_word_embeddings", "architectures"):
        assert configs[1].get(key) == configs[0].get(key), key
    assert (export / "generation_config.json").is_file()
    assert f"base model: `{source}`" in (export / "README.md").read_text()


def test_refusals_name_the_problem_and_write_nothing(convert_hf_models, tmp_path):
    source = convert_hf_models["llama-gqa"]  # 4 heads, 2 query groups, 2 layers
    save = tmp_path / "out"
    cases = [
        (["--target-tensor-parallel-size", "4"], "do not split across TP=4"),
        (["--target-pipeline-model-parallel-size", "3"], "do not split into PP=3"),
    ]
    for extra, message in cases:
        proc = convert_tool("hf-to-mcore", "--hf-path", source, "--save", save, *extra)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    # a tokenizer bigger than the embedding: SmolLM2's 49,152 tokens on a 512-row model
    small = write_tiny_hf_model(tmp_path / "small-vocab", "llama-gqa")
    copy_tokenizer(resolve_hf_path("bundled:smollm2-135m"), small)
    proc = convert_tool("hf-to-mcore", "--hf-path", small, "--save", save)
    assert proc.returncode == 2 and "the tokenizer has 49152 tokens but the embedding only 512" \
        in proc.stderr, proc.stderr[-2000:]
    assert not save.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    # an occupied --save folder is never overwritten
    save.mkdir()
    (save / "keep.txt").write_text("x")
    proc = convert_tool("hf-to-mcore", "--hf-path", source, "--save", save)
    assert proc.returncode == 2 and "already exists and is not empty" in proc.stderr
    assert [p.name for p in save.iterdir()] == ["keep.txt"]


def test_bf16_source_round_trips_bitwise_with_dtype_bfloat16(tmp_path):
    source = write_tiny_hf_model(tmp_path / "bf16", "llama3")
    weights = load_file(source / "model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, source / "model.safetensors",
              metadata={"format": "pt"})
    for args in (["hf-to-mcore", "--hf-path", source, "--save", tmp_path / "mcore"],
                 ["mcore-to-hf", "--load", tmp_path / "mcore", "--save", tmp_path / "back",
                  "--dtype", "bfloat16"]):
        proc = convert_tool(*args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "back" /
                                                                        "model.safetensors")
    assert sorted(before) == sorted(after)
    assert all(after[k].dtype == torch.bfloat16 and torch.equal(after[k].view(torch.uint8),
                                                                 before[k].view(torch.uint8))
               for k in before)
