#!/usr/bin/env python3
"""Conversion speed and memory: a random Llama converted HF -> Megatron -> HF.

    python benchmarks/bench_convert.py [--size small|1b] [--workdir DIR]

Prints, for each direction, the seconds and the peak memory (PSS: each page counted once) of
the converting process tree as a multiple of the model's fp32 bytes (target <= 1.3x), plus the
memory of a process that only imports the libraries (the fixed cost included in every figure). ``small`` (~0.3B
parameters) is the default for shared CI machines; ``1b`` (~1.1B, 4.4 GB) is the issue's size.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_preprocess import run_measured  # noqa: E402

from megatron_telecom.convert.hf_config import hf_config_from_preset  # noqa: E402
from megatron_telecom.convert.hf_io import write_sharded  # noqa: E402
from megatron_telecom.convert.mapping import expected_hf_shapes  # noqa: E402
from megatron_telecom.models.presets import ModelPreset  # noqa: E402

SIZES = {
    "small": dict(num_layers=16, hidden_size=1024, ffn_hidden_size=4096, num_attention_heads=16,
                  num_query_groups=4),
    "1b": dict(num_layers=16, hidden_size=2048, ffn_hidden_size=8192, num_attention_heads=32,
               num_query_groups=8),
}
IMPORTS = ("import megatron_telecom.convert.hf_to_mcore, megatron_telecom.convert.mcore_to_hf, "
           "transformers, safetensors; import megatron_telecom.runtime.cpu_shim as s; "
           "s.install_cpu_shim(); import megatron.core")


def write_random_llama(folder: Path, size: str) -> int:
    """A random LlamaForCausalLM folder (streamed, tensor by tensor); its fp32 bytes."""
    preset = ModelPreset(name=f"random-{size}", vocab_size=32000, seq_length=4096,
                         max_position_embeddings=4096, rotary_base=500000.0,
                         hf_architecture="LlamaForCausalLM", **SIZES[size])
    folder.mkdir(parents=True)
    config = hf_config_from_preset(preset, base={"bos_token_id": 1, "eos_token_id": 2})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    shapes = expected_hf_shapes(preset)
    specs = [(name, shape, torch.float32) for name, shape in shapes.items()]
    write_sharded(folder, specs, lambda name: torch.randn(shapes[name]) * 0.02, 1024**3)
    return sum(math.prod(shape) * 4 for shape in shapes.values())


def measure(command: list[str]) -> tuple[float, int]:
    """(seconds, peak bytes of the process tree): PSS, so pages shared with the forked
    checkpoint-writer processes count once (RSS would count them in every process)."""
    seconds, _, peak_mb = run_measured(command, REPO, memory=lambda p: p.memory_full_info().pss)
    return seconds, int(peak_mb * 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_convert."))
    try:
        model_bytes = write_random_llama(work / "hf", args.size)
        tool = [sys.executable, str(REPO / "tools" / "convert_checkpoint.py")]
        _, baseline = measure([sys.executable, "-c", IMPORTS])
        rows = {
            "hf-to-mcore": measure([*tool, "hf-to-mcore", "--hf-path", str(work / "hf"),
                                    "--save", str(work / "mcore")]),
            "mcore-to-hf": measure([*tool, "mcore-to-hf", "--load", str(work / "mcore"),
                                    "--save", str(work / "hf2")]),
        }
        print(f"random Llama {args.size}: {model_bytes / 4 / 1e9:.2f}B parameters, "
              f"{model_bytes / 1e9:.2f} GB fp32; library import memory {baseline / 1e9:.2f} GB")
        for name, (seconds, peak) in rows.items():
            print(f"{name}: {seconds:6.1f} s, peak memory {peak / 1e9:.2f} GB = "
                  f"{peak / model_bytes:.2f}x model bytes "
                  f"({(peak - baseline) / model_bytes:.2f}x above the import baseline)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
