"""Commands of ``tools/convert_checkpoint.py`` (also ``python -m megatron_telecom.convert``): one
config dataclass per command, and its run.

The configs are the flag surface (``megatron_telecom.arguments`` fills them); the runs import
torch and megatron only when called, so a bad flag fails before either is loaded. ``verify``
returns exit code 1 when the logits differ by more than ``--tolerance`` (bad input is 2).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.tokenizers import TokenizerConfig
from megatron_telecom.models.options import DType

InitMethod = Literal["mean", "noisy-mean"]
"""How resize-vocab starts the new rows (convert/resize_vocab.py)."""

DESCRIPTION = ("Checkpoint conversion: Hugging Face <-> Megatron (torch_dist), a logits check of the two, "
               "and a vocabulary resize for an extended tokenizer.")


@dataclass(kw_only=True)
class HFModelConfig:
    """The Hugging Face side of a conversion (one declaration for every command)."""

    hf_path: str
    """HF model folder, or bundled:NAME (bundled:smollm2-135m is the built-in base model)."""


@dataclass(kw_only=True)
class MegatronCheckpointConfig:
    """The megatron side of a conversion (one declaration for every command)."""

    load: str
    """Megatron checkpoint, any TP/PP: a run's --save folder or one of its iter_* folders."""


@dataclass(kw_only=True)
class HFToMcoreConfig:
    """HF model folder -> megatron checkpoint (torch_dist), in one process."""

    hf: HFModelConfig
    save: str
    """New checkpoint folder."""
    target_tensor_parallel_size: int = 1
    """TP the checkpoint will train at (vocabulary padding, checks)."""
    target_pipeline_model_parallel_size: int = 1
    """PP the checkpoint will train at (checked to split the layers)."""
    make_vocab_size_divisible_by: int = 128
    """Pad the vocabulary to a multiple of this times the target TP, as training does."""


@dataclass(kw_only=True)
class McoreToHFConfig:
    """Megatron checkpoint (any TP/PP) -> HF model folder."""

    checkpoint: MegatronCheckpointConfig
    save: str
    """New HF model folder."""
    dtype: DType = "float32"
    """Format of the exported weights."""
    max_shard_size_mb: int = 2048
    """Largest safetensors file, in MiB."""


@dataclass(kw_only=True)
class VerifyConfig:
    """HF vs megatron logits on the same tokens."""

    hf: HFModelConfig
    checkpoint: MegatronCheckpointConfig
    batch_size: int = 2
    """Sequences in the compared batch."""
    seq_length: int = 128
    """Tokens per sequence."""
    dtype: DType = "float32"
    """Format both models run in (logits are compared in float32)."""
    tolerance: float = 1e-4
    """Largest allowed max |logit difference| (1e-4 suits float32; bf16 needs about 0.5); above it the exit code is 1."""
    seed: int = 1234
    """Seed of the random tokens used when the HF folder has no tokenizer."""


@dataclass(kw_only=True)
class ResizeVocabConfig:
    """Megatron checkpoint (any TP/PP) -> the same model with an extended tokenizer's vocabulary
    (docs/vocabulary.md): new embedding/output rows start as the mean of their old pieces' rows."""

    checkpoint: MegatronCheckpointConfig
    save: str
    """New checkpoint folder (a release checkpoint with the new tokenizer in tokenizer/)."""
    tokenizer: TokenizerConfig
    old_tokenizer_model: str | None = None
    """The tokenizer the checkpoint was trained with (default: its tokenizer/ folder, else its --tokenizer-model)."""
    target_tensor_parallel_size: int | None = None
    """TP the checkpoint will train at, for the vocabulary padding (default: the checkpoint's)."""
    make_vocab_size_divisible_by: int | None = None
    """Pad the vocabulary to a multiple of this times the target TP (default: the checkpoint's, else 128)."""
    init: InitMethod = "mean"
    """New rows: mean of the old pieces' rows, or noisy-mean (plus seeded Gaussian noise)."""
    init_noise_scale: float = 0.1
    """noisy-mean: the noise's std per dimension, as a fraction of the old rows' std."""
    seed: int = 1234
    """noisy-mean: seed of the noise."""


def resize_vocab(config: ResizeVocabConfig) -> int:
    """Resize; the library prints what it wrote."""
    from megatron_telecom.convert.resize_vocab import resize_vocab as resize

    t = config.tokenizer
    if t.tokenizer_type is None or t.tokenizer_model is None:
        raise ValueError("resize-vocab needs --tokenizer-type and --tokenizer-model (the extended tokenizer)")
    resize(config.checkpoint.load, config.save, tokenizer_type=t.tokenizer_type,
           tokenizer_model=t.tokenizer_model, old_tokenizer_model=config.old_tokenizer_model,
           target_tensor_parallel_size=config.target_tensor_parallel_size,
           make_vocab_size_divisible_by=config.make_vocab_size_divisible_by, init=config.init,
           noise_scale=config.init_noise_scale, seed=config.seed)
    return 0


def hf_to_mcore(config: HFToMcoreConfig) -> int:
    """Convert; the library prints what it wrote."""
    from megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore

    convert_hf_to_mcore(config.hf.hf_path, config.save,
                        target_tensor_parallel_size=config.target_tensor_parallel_size,
                        target_pipeline_model_parallel_size=config.target_pipeline_model_parallel_size,
                        make_vocab_size_divisible_by=config.make_vocab_size_divisible_by)
    return 0


def mcore_to_hf(config: McoreToHFConfig) -> int:
    """Export; the library prints what it wrote."""
    from megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf

    export_mcore_to_hf(config.checkpoint.load, config.save, dtype=config.dtype,
                       max_shard_bytes=config.max_shard_size_mb * 1024**2)
    return 0


def verify(config: VerifyConfig) -> int:
    """Print the comparison; exit code 1 when the logits differ by more than --tolerance."""
    from megatron_telecom.convert.verify import verify as compare_logits

    report = compare_logits(config.hf.hf_path, config.checkpoint.load, batch_size=config.batch_size,
                            seq_length=config.seq_length, seed=config.seed, dtype=config.dtype)
    print(report.summary(), flush=True)
    if report.max_abs_diff <= config.tolerance:
        return 0
    print(f"FAILED: max |logit difference| {report.max_abs_diff:.3g} > --tolerance "
          f"{config.tolerance:g}", file=sys.stderr)
    return 1


@dataclass(kw_only=True)
class LoraToPeftConfig:
    """LoRA adapter checkpoint (any TP/PP) -> Hugging Face PEFT adapter folder (docs/lora.md)."""

    checkpoint: MegatronCheckpointConfig
    save: str
    """New PEFT adapter folder (adapter_config.json, adapter_model.safetensors, README.md)."""


@dataclass(kw_only=True)
class LoraMergeConfig:
    """LoRA adapter checkpoint + its base -> HF model folder with the adapters merged (docs/lora.md)."""

    checkpoint: MegatronCheckpointConfig
    save: str
    """New HF model folder."""
    base: str | None = None
    """The base checkpoint (default: the one the adapter checkpoint recorded; checked against its identity)."""
    dtype: DType = "float32"
    """Format of the exported weights (merged in float32, then cast)."""
    max_shard_size_mb: int = 2048
    """Largest safetensors file, in MiB."""


def lora_to_peft(config: LoraToPeftConfig) -> int:
    """Export the adapters; the library prints what it wrote."""
    from megatron_telecom.convert.lora import export_peft_adapter

    export_peft_adapter(config.checkpoint.load, config.save)
    return 0


def lora_merge(config: LoraMergeConfig) -> int:
    """Export the merged model; the library prints what it wrote."""
    from megatron_telecom.convert.lora import export_merged

    export_merged(config.checkpoint.load, config.save, base=config.base, dtype=config.dtype,
                  max_shard_bytes=config.max_shard_size_mb * 1024**2)
    return 0


COMMANDS = {"hf-to-mcore": HFToMcoreConfig, "mcore-to-hf": McoreToHFConfig, "verify": VerifyConfig,
            "lora-to-peft": LoraToPeftConfig, "lora-merge": LoraMergeConfig,
            "resize-vocab": ResizeVocabConfig}
"""Command name -> its config: the flag surface of tools/convert_checkpoint.py."""
RUNS = {"hf-to-mcore": hf_to_mcore, "mcore-to-hf": mcore_to_hf, "verify": verify,
        "lora-to-peft": lora_to_peft, "lora-merge": lora_merge, "resize-vocab": resize_vocab}
"""Command name -> the function that runs it."""


def main(argv: list[str] | None = None, *, prog: str = "convert_checkpoint.py") -> int:
    """Run one command; bad input is one 'error:' line and exit code 2."""
    return run_entry_point(COMMANDS, RUNS, argv, prog=prog, description=DESCRIPTION)


def command_line(command: str, **flags: str) -> list[str]:
    """argv running ``command`` in a process of its own: ``python -m megatron_telecom.convert``
    (``flags``: ``load="X"`` -> ``--load X``). Conversion installs the process-global CPU shim."""
    argv = [sys.executable, "-m", "megatron_telecom.convert", command]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv
