"""Model sources for every evaluation tool: an HF folder, ``bundled:NAME`` or a megatron checkpoint.

A megatron checkpoint folder (any TP/PP; the ``--save`` folder or one ``iter_*`` folder) is
exported once to Hugging Face format with ``megatron_telecom.convert.mcore_to_hf`` into
``<cache>/hf-exports/<key>``, where the key hashes the checkpoint's resolved path and iteration;
the export is written to a temporary folder and renamed into place under a lock, so concurrent
evaluations (shards) export once and never see half a folder. Models run in fp32 on CPU and
bf16 on GPU (``--dtype`` overrides).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from megatron_telecom.convert.bundled import cache_dir, is_bundled, resolve_hf_path

TRACKER_FILE = "latest_checkpointed_iteration.txt"
EXPORT_COMPLETE = ".export-complete"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A causal LM ready for scoring, with its tokenizer and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    source: str
    hf_path: Path
    device: torch.device


def checkpoint_iteration(path: Path) -> str:
    """The iteration a checkpoint folder stands for: its tracker file, or its ``iter_*`` name."""
    tracker = path / TRACKER_FILE
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
    """The HF folder of a megatron checkpoint, exported on first use (locked, atomic)."""
    from megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf

    target = export_cache_path(checkpoint)
    if (target / EXPORT_COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / EXPORT_COMPLETE).is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                export_mcore_to_hf(checkpoint, tmp)
                (tmp / EXPORT_COMPLETE).write_text(f"{checkpoint.resolve()}\n")
                shutil.rmtree(target, ignore_errors=True)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_megatron_checkpoint(path: Path) -> bool:
    from megatron_telecom.convert.mcore_to_hf import is_megatron_checkpoint

    return is_megatron_checkpoint(path)


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
    if _is_megatron_checkpoint(path):
        return _export_checkpoint(path)
    raise ValueError(f"--model {source}: neither an HF model folder (no config.json) nor a megatron "
                     f"checkpoint (no {TRACKER_FILE} or iter_* checkpoint)")


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    return LoadedModel(model=model, tokenizer=tokenizer, source=str(source), hf_path=hf_path, device=device)
