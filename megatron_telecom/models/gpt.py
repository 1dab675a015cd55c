"""Preset + options -> megatron-core TransformerConfig, layer spec and GPTModel.

Backends are chosen once (``choose_backends``), before anything is built: the Transformer
Engine spec (with FP8) when ``transformer_engine`` imports, megatron-core's local spec otherwise
(CPU, CI). The local spec's core attention is ``--attention-backend``: ``sdpa`` (torch's fused
kernels, the default without TE) or ``local`` (megatron-core's ``DotProductAttention``, s x s
scores). The parallel sizes come from a checked ``ParallelLayout`` (runtime/parallel_layout.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, get_args

import torch
import torch.nn.functional as F

from megatron_telecom.models.options import (
    ATTENTION_BACKENDS,
    AttentionBackend,
    Fp8AmaxComputeAlgo,
    Fp8Format,
    Fp8Options,
    Fp8Recipe,
    RecomputeGranularity,
    RecomputeMethod,
    RecomputeOptions,
    TransformerImpl,
)
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.runtime.parallel_layout import ParallelLayout, compute_parallel_layout

if TYPE_CHECKING:  # megatron is imported lazily so the CPU shim can be installed first
    from megatron.core.models.gpt import GPTModel
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_config import TransformerConfig
    from typing_extensions import Unpack

__all__ = [
    "ATTENTION_BACKENDS",
    "LOCAL_BACKENDS",
    "Fp8Options",
    "ModelBackends",
    "RecomputeOptions",
    "TransformerOptions",
    "build_gpt_model",
    "build_gpt_model_chunks",
    "build_transformer_config",
    "choose_backends",
    "get_layer_spec",
    "pad_vocab_size",
    "parallel_layout_for",
    "transformer_config_kwargs",
    "transformer_engine_available",
]

# Choices as tuples for the checks of programmatic callers (flags are checked while parsing).
FP8_FORMATS = get_args(Fp8Format)
FP8_RECIPES = get_args(Fp8Recipe)
FP8_AMAX_COMPUTE_ALGOS = get_args(Fp8AmaxComputeAlgo)
RECOMPUTE_GRANULARITIES = get_args(RecomputeGranularity)
RECOMPUTE_METHODS = get_args(RecomputeMethod)


@functools.cache
def transformer_engine_available() -> bool:
    """True when ``import transformer_engine`` works (TE may also raise non-ImportErrors)."""
    try:
        import transformer_engine  # noqa: F401
    except Exception:
        return False
    return True


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
    if fp8.fp8_format not in FP8_FORMATS:
        raise ValueError(f"--fp8-format {fp8.fp8_format!r}: choose one of {FP8_FORMATS}")
    if fp8.fp8_recipe not in FP8_RECIPES:
        raise ValueError(f"--fp8-recipe {fp8.fp8_recipe!r}: choose one of {FP8_RECIPES}")
    if fp8.fp8_amax_compute_algo not in FP8_AMAX_COMPUTE_ALGOS:
        raise ValueError(
            f"--fp8-amax-compute-algo {fp8.fp8_amax_compute_algo!r}: "
            f"choose one of {FP8_AMAX_COMPUTE_ALGOS}"
        )
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
    if granularity not in RECOMPUTE_GRANULARITIES:
        raise ValueError(
            f"--recompute-granularity {granularity!r}: choose one of {RECOMPUTE_GRANULARITIES}"
        )
    if granularity == "selective":
        if method is not None or num_layers is not None:
            raise ValueError(
                "--recompute-granularity selective takes no --recompute-method/--recompute-num-layers"
            )
        return {"recompute_granularity": "selective"}
    if method not in RECOMPUTE_METHODS:
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


@dataclass(frozen=True, kw_only=True)
class ModelBackends:
    """Which kernels build the model, decided once by ``choose_backends`` before building."""

    use_transformer_engine: bool
    """Transformer Engine's layer spec and fused kernels (FP8-capable); else the local spec."""
    attention_backend: AttentionBackend
    """Core attention of the local spec: sdpa (also for auto) or megatron's DotProductAttention."""


def choose_backends(
    *, transformer_impl: TransformerImpl | None = None,
    attention_backend: str = "auto",
) -> ModelBackends:
    """--transformer-impl / --attention-backend -> the backends (None impl: by capability).

    TE is chosen by capability only with ``attention_backend`` auto: an explicit sdpa/local
    attention is a local-spec attention, and asking for it together with TE is an error.
    """
    if attention_backend not in ATTENTION_BACKENDS:
        raise ValueError(
            f"--attention-backend {attention_backend!r}: choose one of {ATTENTION_BACKENDS}"
        )
    if transformer_impl == "transformer_engine" and attention_backend != "auto":
        raise ValueError(
            f"--attention-backend {attention_backend} builds the local layer spec: drop "
            "--transformer-impl transformer_engine, or use --attention-backend auto"
        )
    if transformer_impl == "transformer_engine" and not transformer_engine_available():
        raise ValueError(
            "Transformer Engine was requested but `import transformer_engine` fails: install "
            "transformer-engine[pytorch] in a CUDA environment, or drop the TE/FP8 options"
        )
    if transformer_impl is None:
        use_te = attention_backend == "auto" and transformer_engine_available()
        use_te = use_te and torch.cuda.is_available()
    else:
        use_te = transformer_impl == "transformer_engine"
    return ModelBackends(use_transformer_engine=use_te, attention_backend=attention_backend)


# Conversion and evaluation build the same model everywhere: local spec, SDPA attention.
LOCAL_BACKENDS = ModelBackends(use_transformer_engine=False, attention_backend="sdpa")


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
    backends: ModelBackends | None = None,
    use_cpu_initialization: bool | None = None,
    **options: Unpack[TransformerOptions],
) -> TransformerConfig:
    """Build the TransformerConfig for ``preset``, refusing options this machine cannot run.

    ``backends`` None chooses by capability (``choose_backends()``).
    ``use_cpu_initialization=None`` initialises on CPU when CUDA is absent (it also makes TP=N
    weights equal to TP=1's, which the CPU tests rely on).
    """
    backends = choose_backends() if backends is None else backends
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


def get_layer_spec(config: TransformerConfig, backends: ModelBackends | None = None) -> ModuleSpec:
    """The decoder layer spec: Transformer Engine's (fused, FP8-capable) or the local one.

    ``backends`` None chooses by capability; the local spec's core attention is SDPA, or
    megatron's DotProductAttention for attention backend local.
    """
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    backends = choose_backends() if backends is None else backends
    if backends.use_transformer_engine:
        return get_gpt_layer_with_transformer_engine_spec()
    if config.fp8 or config.sequence_parallel:
        raise ValueError(
            "FP8 and sequence parallel need the Transformer Engine layer spec; "
            "transformer_engine is not usable here"
        )
    spec = get_gpt_layer_local_spec(normalization=config.normalization)
    if backends.attention_backend != "local":
        from megatron_telecom.models.attention import SDPADotProductAttention

        spec.submodules.self_attention.submodules.core_attention = SDPADotProductAttention
    return spec


def build_gpt_model(
    preset: ModelPreset,
    config: TransformerConfig,
    *,
    padded_vocab_size: int,
    seq_length: int | None = None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    vp_stage: int | None = None,
    layer_spec: ModuleSpec | None = None,
) -> GPTModel:
    """One GPTModel (or one pipeline chunk of it) on the current device; not DDP-wrapped.

    ``pre_process``/``post_process`` default to whether this rank (and ``vp_stage``) holds the
    first/last pipeline stage; megatron's parallel_state must be initialised. ``layer_spec``
    None is ``get_layer_spec(config)`` (backends by capability).
    """
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    seq_length = preset.seq_length if seq_length is None else seq_length
    if seq_length > preset.max_position_embeddings:
        raise ValueError(
            f"--seq-length {seq_length} exceeds {preset.name}'s max_position_embeddings "
            f"{preset.max_position_embeddings}"
        )
    ignore_virtual = vp_stage is None
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual, vp_stage)
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage(ignore_virtual, vp_stage)
    if layer_spec is None:
        layer_spec = get_layer_spec(config)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec,
        vocab_size=padded_vocab_size,
        max_sequence_length=seq_length,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=not preset.untie_embeddings_and_output_weights,
        position_embedding_type="rope",
        rotary_base=preset.rotary_base,
        rope_scaling=False,  # applied below with all four llama3 parameters
        vp_stage=vp_stage,
    )
    if preset.rope_scaling:
        _apply_llama3_rope_scaling(model, preset)
    return model


def _apply_llama3_rope_scaling(model: GPTModel, preset: ModelPreset) -> None:
    """Llama-3.1 RoPE scaling with the preset's factor, frequency factors and original context.

    megatron-core 0.16.1's GPTModel passes only the factor (the other three fixed at Llama-3.1's
    1, 4 and 8192), so its own scaling function is applied here with all four.
    """
    rope = model.rotary_pos_emb
    rope.inv_freq = rope._apply_scaling(
        rope.inv_freq,
        factor=preset.rope_scaling_factor,
        low_freq_factor=preset.rope_scaling_low_freq_factor,
        high_freq_factor=preset.rope_scaling_high_freq_factor,
        original_max_position_embeddings=preset.rope_scaling_original_max_position_embeddings,
    )


def build_gpt_model_chunks(
    preset: ModelPreset,
    config: TransformerConfig,
    *,
    padded_vocab_size: int,
    seq_length: int | None = None,
    layer_spec: ModuleSpec | None = None,
) -> list[GPTModel]:
    """This rank's model chunks: one per virtual pipeline stage (one without interleaving).

    All chunks share ``layer_spec`` (None: ``get_layer_spec(config)``). On GPUs the chunks are
    moved to the current device.
    """
    if layer_spec is None:
        layer_spec = get_layer_spec(config)
    vpp = config.virtual_pipeline_model_parallel_size
    stages: list[int | None] = list(range(vpp)) if vpp is not None else [None]
    chunks = [
        build_gpt_model(
            preset,
            config,
            padded_vocab_size=padded_vocab_size,
            seq_length=seq_length,
            vp_stage=stage,
            layer_spec=layer_spec,
        )
        for stage in stages
    ]
    if torch.cuda.is_available():
        chunks = [chunk.cuda(torch.cuda.current_device()) for chunk in chunks]
    return chunks
