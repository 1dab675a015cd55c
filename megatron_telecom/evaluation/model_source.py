"""Model sources for every evaluation tool: an HF folder, ``bundled:NAME`` or a megatron checkpoint.

A megatron checkpoint folder (any TP/PP; the ``--save`` folder or one ``iter_*`` folder) is
exported once to Hugging Face format by the converter's own command (``python -m
megatron_telecom.convert mcore-to-hf``, tools/convert_checkpoint.py's) into
``<cache>/hf-exports/<name>-<key>``, where the key hashes the checkpoint's resolved path and
iteration (a new save gets a new export; re-saving the same iteration in place does not); the
export (a child process, staged and renamed by the converter) runs under a lock, so concurrent
evaluations (shards) export once and never see half a folder. Models run in fp32 on CPU and
bf16 on GPU (``--dtype`` overrides); scoring batches hold 2,048 padded tokens on CPU and 32,768
on a GPU (``--tokens-per-batch`` overrides).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from megatron_telecom.bundled import cache_dir, is_bundled, resolve_hf_path
from megatron_telecom.convert.cli import command_line
from megatron_telecom.models.checkpoint_format import TRACKER_FILENAME, is_megatron_checkpoint

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A causal LM ready for scoring, with its tokenizer, HF folder and device."""

    model: torch.nn.Module
    tokenizer: object
    hf_path: Path
    device: torch.device


def checkpoint_iteration(path: Path) -> str:
    """The iteration a checkpoint folder stands for: its tracker file, or its ``iter_*`` name."""
    tracker = path / TRACKER_FILENAME
    if tracker.is_file():
        return tracker.read_text().strip()
    if path.name.startswith("iter_"):
        return path.name
    return "unknown"


def export_cache_path(checkpoint: Path) -> Path:
    """Cache folder of the HF export of ``checkpoint`` (keyed by resolved path and iteration)."""
    resolved = checkpoint.resolve()
    key = hashlib.sha256(f"{resolved}\n{checkpoint_iteration(resolved)}".encode()).hexdigest()[:16]
    return cache_dir() / "hf-exports" / f"{resolved.name}-{key}"


def _export_checkpoint(checkpoint: Path) -> Path:
    """The HF folder of a megatron checkpoint, exported on first use (locked; the export is atomic)."""
    target = export_cache_path(checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # shards of one evaluation: one exports, the others wait
        if not target.is_dir():
            print(f"exporting megatron checkpoint {checkpoint} to {target} (once)", file=sys.stderr)
            # A child process: megatron's CPU shim, which the export needs, stays on for a process's life.
            done = subprocess.run(command_line("mcore-to-hf", load=checkpoint, save=target),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise ValueError(f"--model {checkpoint}: export to HF failed:\n{done.stderr[-3000:]}")
    return target


def resolve_model_path(source: str | os.PathLike) -> Path:
    """An HF folder for a model source: ``bundled:NAME``, an HF folder or a megatron checkpoint."""
    if is_bundled(source):
        return resolve_hf_path(source)
    path = Path(source)
    if (path / "config.json").is_file():
        return path
    if not path.is_dir():
        raise ValueError(f"--model {source}: no such folder; give an HF model folder, a megatron "
                         f"checkpoint folder or bundled:smollm2-135m")
    if is_megatron_checkpoint(path):
        return _export_checkpoint(path)
    raise ValueError(f"--model {source}: neither an HF model folder (no config.json) nor a megatron "
                     f"checkpoint (no {TRACKER_FILENAME} or iter_* checkpoint)")


def default_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` / ``SLURM_LOCALID``, else the first) when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    return torch.device("cuda", int(local) % torch.cuda.device_count())


def default_tokens_per_batch(device: torch.device) -> int:
    """Padded tokens per scoring forward: small on CPU (cache-friendly), large on a GPU."""
    return 32768 if device.type == "cuda" else 2048


def load_model(source: str | os.PathLike, dtype: str | None = None,
               device: torch.device | None = None) -> LoadedModel:
    """Load a model source for inference (eval mode): fp32 on CPU, bf16 on GPU unless ``dtype``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype] if dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    hf_path = resolve_model_path(source)
    tokenizer = AutoTokenizer.from_pretrained(hf_path)
    model = AutoModelForCausalLM.from_pretrained(hf_path, dtype=torch_dtype).to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, hf_path=hf_path, device=device)
