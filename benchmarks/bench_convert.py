#!/usr/bin/env python3
"""Conversion speed and memory: a random Llama converted HF -> Megatron -> HF, streaming converter
beside the previous in-memory one, in the same run.

    python benchmarks/bench_convert.py [--size small|1b] [--layouts 1x1,2x2] [--verify] [--workdir DIR]

For each layout (target TP x PP) and each converter it prints, per direction: wall seconds, CPU
seconds (user+sys of the process tree: other users' load hardly moves them), the peak memory
(PSS: each page counted once) of the converting process tree as a multiple of the model's fp32
bytes (issue 31's target for the streaming converter: <= 0.3x), and whether the two converters'
exports are byte-identical. Also the memory of a process that only imports the libraries (a
fixed cost included in every figure), ``verify``'s own peak with ``--verify``, and the peaks
extrapolated to Llama-3-8B and -70B from the largest tensor. ``small`` (~0.3B parameters) is the
default for shared CI machines; ``1b`` (~1.1B, 4.4 GB) is the issue's size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
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
from megatron_telecom.models.transformer_config import pad_vocab_size  # noqa: E402

SIZES = {
    "small": dict(num_layers=16, hidden_size=1024, ffn_hidden_size=4096, num_attention_heads=16,
                  num_query_groups=4, vocab_size=32000),
    "1b": dict(num_layers=16, hidden_size=2048, ffn_hidden_size=8192, num_attention_heads=32,
               num_query_groups=8, vocab_size=32000),
}
EXTRAPOLATED = {  # Llama-3's published shapes (untied embeddings, 128,256-token vocabulary)
    "Llama-3-8B": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=14336,
                       num_attention_heads=32, num_query_groups=8, vocab_size=128256),
    "Llama-3-70B": dict(num_layers=80, hidden_size=8192, ffn_hidden_size=28672,
                        num_attention_heads=64, num_query_groups=8, vocab_size=128256),
}
IMPORTS = ("import megatron_telecom.convert.hf_to_mcore, megatron_telecom.convert.mcore_to_hf, "
           "transformers, safetensors; import megatron_telecom.runtime.cpu_shim as s; "
           "s.install_cpu_shim(); import megatron.core")
# one driver for both converters, so they pay the same imports: DIRECTION SOURCE TARGET STREAMING TP PP
DRIVER = """import sys
from megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore
from megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf
direction, source, target, streaming, tp, pp = sys.argv[1:]
if direction == "hf-to-mcore":
    convert_hf_to_mcore(source, target, target_tensor_parallel_size=int(tp),
                        target_pipeline_model_parallel_size=int(pp), streaming=streaming == "1")
else:
    export_mcore_to_hf(source, target, streaming=streaming == "1")
"""
CONVERTERS = {"in-memory": "0", "streaming": "1"}


def preset_of(name: str, shape: dict) -> ModelPreset:
    return ModelPreset(name=name, seq_length=4096, max_position_embeddings=4096,
                       rotary_base=500000.0, hf_architecture="LlamaForCausalLM",
                       untie_embeddings_and_output_weights=True, **shape)


def write_random_llama(folder: Path, size: str, vocab_size: int | None = None) -> int:
    """A random LlamaForCausalLM folder (streamed, tensor by tensor), with the vocabulary of
    ``SIZES[size]`` unless ``vocab_size`` is given; its fp32 bytes."""
    preset = preset_of(f"random-{size}", {**SIZES[size], **({"vocab_size": vocab_size} if vocab_size else {})})
    folder.mkdir(parents=True)
    config = hf_config_from_preset(preset, base={"bos_token_id": 1, "eos_token_id": 2})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    shapes = expected_hf_shapes(preset)
    specs = [(name, shape, torch.float32) for name, shape in shapes.items()]
    write_sharded(folder, specs, lambda name: torch.randn(shapes[name]) * 0.02, 1024**3)
    return sum(math.prod(shape) * 4 for shape in shapes.values())


def largest_tensor_bytes(preset: ModelPreset, tensor_parallel: int = 1) -> int:
    """fp32 bytes of the largest tensor either converter holds: the padded embedding or one
    layer's [gate; up]."""
    rows = pad_vocab_size(preset.vocab_size, make_vocab_size_divisible_by=128,
                          tensor_model_parallel_size=tensor_parallel)
    return 4 * preset.hidden_size * max(rows, 2 * preset.ffn_hidden_size)


def measure(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak bytes of the process tree): PSS, so pages shared with the
    forked checkpoint-writer processes count once (RSS would count them in every process)."""
    wall, cpu, peak_mb = run_measured(command, REPO, memory=lambda p: p.memory_full_info().pss)
    return wall, cpu, int(peak_mb * 2**20)


def folder_digest(folder: Path) -> str:
    """sha256 over every file's name and bytes (the export's identity), but the model card's,
    which names the checkpoint it was exported from."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.name != "README.md"):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def run_layout(work: Path, tp: int, pp: int, model_bytes: int, baseline: int) -> dict[str, dict]:
    """Both converters, both directions, at one target layout; rows keyed by converter."""
    rows: dict[str, dict] = {}
    for converter, flag in CONVERTERS.items():
        mcore, export = work / f"mcore-{converter}-{tp}x{pp}", work / f"hf-{converter}-{tp}x{pp}"
        row = {}
        for direction, source, target in (("hf-to-mcore", work / "hf", mcore),
                                          ("mcore-to-hf", mcore, export)):
            row[direction] = measure([sys.executable, "-c", DRIVER, direction, str(source),
                                      str(target), flag, str(tp), str(pp)])
            wall, cpu, peak = row[direction]
            print(f"TP={tp} PP={pp} {direction:<11} {converter:<9}: {wall:6.1f} s wall, "
                  f"{cpu:6.1f} s CPU, peak {peak / 1e9:5.2f} GB = {peak / model_bytes:.2f}x model "
                  f"bytes ({(peak - baseline) / model_bytes:.2f}x above the import baseline)",
                  flush=True)
        row["digest"] = folder_digest(export)
        row["mcore"] = mcore
        shutil.rmtree(export)
        if converter == "in-memory":
            shutil.rmtree(mcore)  # the streaming checkpoint stays for --verify
        rows[converter] = row
    same = rows["in-memory"]["digest"] == rows["streaming"]["digest"]
    print(f"TP={tp} PP={pp}: exports of the two converters "
          f"{'byte-identical' if same else 'DIFFERENT'}; streaming / in-memory wall: "
          + ", ".join(f"{d} {rows['streaming'][d][0] / rows['in-memory'][d][0]:.2f}x"
                      for d in ("hf-to-mcore", "mcore-to-hf")), flush=True)
    return rows


def extrapolate(rows: dict[str, dict], size: str, baseline: int) -> None:
    """Peaks at 8B and 70B: the import baseline plus the measured multiple of the largest tensor
    (input shards are memory-mapped and read a tensor at a time, output shards written a tensor
    at a time, so shard sizes do not enter the peak)."""
    measured = largest_tensor_bytes(preset_of(size, SIZES[size]))
    print(f"\nextrapolation (streaming; peak = import baseline {baseline / 1e9:.2f} GB + k x the "
          f"largest tensor, k measured at {size}):")
    ks = {d: (rows["streaming"][d][2] - baseline) / measured for d in ("hf-to-mcore", "mcore-to-hf")}
    print("  " + ", ".join(f"k({d}) = {k:.2f}" for d, k in ks.items()))
    print("  | model | fp32 bytes | largest tensor | hf-to-mcore peak | mcore-to-hf peak | "
          "in-memory converter (~1.1x) |")
    for name, shape in EXTRAPOLATED.items():
        preset = preset_of(name, shape)
        total = sum(math.prod(s) * 4 for s in expected_hf_shapes(preset).values())
        largest = largest_tensor_bytes(preset)
        peaks = [baseline + k * largest for k in ks.values()]
        print(f"  | {name} | {total / 1e9:.1f} GB | {largest / 1e9:.2f} GB | "
              + " | ".join(f"{p / 1e9:.1f} GB ({p / total:.3f}x)" for p in peaks)
              + f" | {1.1 * total / 1e9:.0f} GB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--layouts", default="1x1,2x2", help="target TPxPP layouts, comma-separated")
    parser.add_argument("--verify", action="store_true", help="also measure verify's own peak")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_convert."))
    try:
        model_bytes = write_random_llama(work / "hf", args.size)
        _, _, baseline = measure([sys.executable, "-c", IMPORTS])
        print(f"random Llama {args.size}: {model_bytes / 4 / 1e9:.2f}B parameters, "
              f"{model_bytes / 1e9:.2f} GB fp32; library import memory {baseline / 1e9:.2f} GB "
              f"({baseline / model_bytes:.2f}x); load average at start "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        results = {}
        for layout in args.layouts.split(","):
            tp, pp = map(int, layout.split("x"))
            results[layout] = run_layout(work, tp, pp, model_bytes, baseline)
        if args.verify:
            mcore = results[args.layouts.split(",")[0]]["streaming"]["mcore"]
            wall, cpu, peak = measure([sys.executable, str(REPO / "tools" / "convert_checkpoint.py"),
                                       "verify", "--hf-path", str(work / "hf"), "--load", str(mcore),
                                       "--batch-size", "1", "--seq-length", "32"])
            print(f"verify (its own figure, whole models one at a time): {wall:.1f} s wall, "
                  f"{cpu:.1f} s CPU, peak {peak / 1e9:.2f} GB = {peak / model_bytes:.2f}x model bytes")
        extrapolate(results[args.layouts.split(",")[0]], args.size, baseline)
        print(f"load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
