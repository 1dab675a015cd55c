"""Preset + options -> megatron-core TransformerConfig (the translation, in one place).

The parallel sizes come from a checked ``ParallelLayout`` (runtime/parallel_layout.py); the
kernels from ``ModelBackends`` (models/backends.py). Choice-valued options were checked when
the flags were parsed (``Literal`` fields); what depends on the model (recompute layers per
stage) and on the machine (FP8 and sequence parallel need TE on CUDA) is checked here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypedDict, get_args

import torch
import torch.nn.functional as F

from megatron_telecom.models.backends import ModelBackends, transformer_engine_available
from megatron_telecom.models.options import Fp8Options, RecomputeMethod, RecomputeOptions
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.runtime.parallel_layout import ParallelLayout, compute_parallel_layout

if TYPE_CHECKING:  # megatron is imported lazily so the CPU shim can be installed first
    from megatron.core.transformer.transformer_config import TransformerConfig
    from typing_extensions import Unpack

RECOMPUTE_METHODS = get_args(RecomputeMethod)


def pad_vocab_size(
    vocab_size: int, *, make_vocab_size_divisible_by: int = 128, tensor_model_parallel_size: int = 1
) -> int:
    """Round the vocabulary up to a multiple of divisible_by * TP (Megatron-LM's padding)."""
    if vocab_size < 1 or make_vocab_size_divisible_by < 1 or tensor_model_parallel_size < 1:
        raise ValueError(
            f"vocab size ({vocab_size}), --make-vocab-size-divisible-by "
            f"({make_vocab_size_divisible_by}) and TP ({tensor_model_parallel_size}) must be >= 1"
        )
    multiple = make_vocab_size_divisible_by * tensor_model_parallel_size
    return math.ceil(vocab_size / multiple) * multiple


def _fp8_kwargs(fp8: Fp8Options | None) -> dict[str, Any]:
    if fp8 is None or fp8.fp8_format is None:
        return {}
    if fp8.fp8_amax_history_len < 1 or fp8.fp8_margin < 0:
        raise ValueError("--fp8-amax-history-len must be >= 1 and --fp8-margin >= 0")
    return {
        "fp8": fp8.fp8_format,
        "fp8_recipe": fp8.fp8_recipe,
        "fp8_margin": fp8.fp8_margin,
        "fp8_amax_history_len": fp8.fp8_amax_history_len,
        "fp8_amax_compute_algo": fp8.fp8_amax_compute_algo,
    }


def _recompute_kwargs(recompute: RecomputeOptions | None, layers_per_stage: int) -> dict[str, Any]:
    if recompute is None or recompute.recompute_granularity is None:
        if recompute is not None and (recompute.recompute_method or recompute.recompute_num_layers):
            raise ValueError("--recompute-method/--recompute-num-layers need --recompute-granularity")
        return {}
    granularity, method, num_layers = (
        recompute.recompute_granularity,
        recompute.recompute_method,
        recompute.recompute_num_layers,
    )
    if granularity == "selective":
        if method is not None or num_layers is not None:
            raise ValueError(
                "--recompute-granularity selective takes no --recompute-method/--recompute-num-layers"
            )
        return {"recompute_granularity": "selective"}
    if method is None:
        raise ValueError(
            f"--recompute-granularity full needs --recompute-method {'|'.join(RECOMPUTE_METHODS)}"
        )
    if num_layers is None or not 1 <= num_layers <= layers_per_stage:
        raise ValueError(
            f"--recompute-granularity full needs --recompute-num-layers between 1 and the "
            f"layers per pipeline stage ({layers_per_stage}), got {num_layers}"
        )
    return {
        "recompute_granularity": "full",
        "recompute_method": method,
        "recompute_num_layers": num_layers,
    }


def _parallel_kwargs(layout: ParallelLayout) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "tensor_model_parallel_size": layout.tensor_model_parallel_size,
        "pipeline_model_parallel_size": layout.pipeline_model_parallel_size,
        "virtual_pipeline_model_parallel_size": layout.virtual_pipeline_model_parallel_size,
        "sequence_parallel": layout.sequence_parallel,
    }
    if layout.virtual_pipeline_model_parallel_size is not None:
        # megatron-core 0.16.1 computes wrong numbers for interleaved 1F1B at PP=2 with batched
        # isend/irecv (no error raised); separate p2p ops are exact.
        kwargs["batch_p2p_comm"] = False
    return kwargs


def parallel_layout_for(
    preset: ModelPreset,
    *,
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: int | None = None,
    sequence_parallel: bool = False,
    world_size: int | None = None,
) -> ParallelLayout:
    """The checked layout of ``preset`` at these sizes, one microbatch of one sequence per DP rank.

    For callers without a batch (conversion, evaluation, tests); ``world_size`` defaults to
    TP x PP (no data parallelism).
    """
    tp, pp = tensor_model_parallel_size, pipeline_model_parallel_size
    return compute_parallel_layout(
        world_size=tp * pp if world_size is None else world_size,
        num_layers=preset.num_layers, num_attention_heads=preset.num_attention_heads,
        num_query_groups=preset.num_query_groups, tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
        sequence_parallel=sequence_parallel)


def transformer_config_kwargs(
    preset: ModelPreset,
    *,
    layout: ParallelLayout | None = None,
    bf16: bool = False,
    fp8: Fp8Options | None = None,
    recompute: RecomputeOptions | None = None,
    hidden_dropout: float = 0.0,
    attention_dropout: float = 0.0,
    use_cpu_initialization: bool = False,
    fused_kernels: bool = False,
) -> dict[str, Any]:
    """The TransformerConfig fields for a preset, a checked layout and options.

    ``layout`` None is one process (``parallel_layout_for(preset)``). ``fused_kernels`` turns
    on the TE/GPU fusions (bias-SwiGLU, RoPE, wgrad accumulation). Capability checks (TE
    installed, CUDA present) live in ``build_transformer_config``.
    """
    layout = parallel_layout_for(preset) if layout is None else layout
    dtype = torch.bfloat16 if bf16 else torch.float32
    layers_per_stage = preset.num_layers // layout.pipeline_model_parallel_size
    return {
        "num_layers": preset.num_layers,
        "hidden_size": preset.hidden_size,
        "ffn_hidden_size": preset.ffn_hidden_size,
        "num_attention_heads": preset.num_attention_heads,
        "num_query_groups": preset.num_query_groups,
        "kv_channels": preset.kv_channels,
        "normalization": "RMSNorm",
        "layernorm_epsilon": preset.norm_epsilon,
        "gated_linear_unit": True,
        "activation_func": F.silu,
        "add_bias_linear": False,
        "add_qkv_bias": False,
        "hidden_dropout": hidden_dropout,
        "attention_dropout": attention_dropout,
        "init_method_std": preset.init_method_std,
        "use_cpu_initialization": use_cpu_initialization,
        "perform_initialization": True,
        "bf16": bf16,
        "params_dtype": dtype,
        "pipeline_dtype": dtype,
        "bias_activation_fusion": fused_kernels,
        "bias_dropout_fusion": fused_kernels,
        "apply_rope_fusion": fused_kernels,
        "gradient_accumulation_fusion": fused_kernels,
        "masked_softmax_fusion": False,
        "persist_layer_norm": False,
        **_parallel_kwargs(layout),
        **_recompute_kwargs(recompute, layers_per_stage),
        **_fp8_kwargs(fp8),
    }


class TransformerOptions(TypedDict, total=False):
    """Options build_transformer_config passes on; defaults as in transformer_config_kwargs."""

    layout: ParallelLayout | None
    bf16: bool
    fp8: Fp8Options | None
    recompute: RecomputeOptions | None
    hidden_dropout: float
    attention_dropout: float


def build_transformer_config(
    preset: ModelPreset,
    *,
    backends: ModelBackends,
    use_cpu_initialization: bool | None = None,
    **options: Unpack[TransformerOptions],
) -> TransformerConfig:
    """Build the TransformerConfig for ``preset``, refusing options this machine cannot run.

    ``backends`` is ``choose_backends(...)``'s decision (``LOCAL_BACKENDS`` for conversion).
    ``use_cpu_initialization=None`` initialises on CPU when CUDA is absent (it also makes TP=N
    weights equal to TP=1's, which the CPU tests rely on).
    """
    te_on_cuda = backends.use_transformer_engine and torch.cuda.is_available()
    fp8 = options.get("fp8")
    if fp8 is not None and fp8.fp8_format is not None and not te_on_cuda:
        raise ValueError(
            "--fp8-format needs Transformer Engine on CUDA GPUs (Hopper or newer); this process "
            f"has transformer_engine={'yes' if transformer_engine_available() else 'no'}, "
            f"CUDA={'yes' if torch.cuda.is_available() else 'no'}: drop --fp8-format here"
        )
    layout = options.get("layout")
    if layout is not None and layout.sequence_parallel and not te_on_cuda:
        raise ValueError(
            "--sequence-parallel needs Transformer Engine norms on CUDA GPUs: megatron-core "
            "0.16.1's local layer spec uses torch RMSNorm, which refuses sequence parallelism; "
            "drop --sequence-parallel here"
        )
    if use_cpu_initialization is None:
        use_cpu_initialization = not torch.cuda.is_available()
    from megatron.core.transformer.transformer_config import TransformerConfig

    kwargs = transformer_config_kwargs(
        preset, use_cpu_initialization=use_cpu_initialization,
        fused_kernels=backends.use_transformer_engine, **options,
    )
    return TransformerConfig(**kwargs)
