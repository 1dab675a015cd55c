"""Flag -> TransformerConfig translation (FP8, recompute, parallelism) and backend selection.

Runs without Transformer Engine: the translation is checked on the field dict and on a real
TransformerConfig built from it; the capability checks must refuse what this box cannot run.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from megatron_telecom.models.backends import (
    choose_backends,
    get_layer_spec,
    transformer_engine_available,
)
from megatron_telecom.models.options import Fp8Options, RecomputeOptions
from megatron_telecom.models.presets import get_preset
from megatron_telecom.models.transformer_config import (
    build_transformer_config,
    parallel_layout_for,
    transformer_config_kwargs,
)

needs_no_te = pytest.mark.skipif(
    transformer_engine_available(), reason="checks the behaviour without Transformer Engine"
)


def _layout(**sizes):
    return parallel_layout_for(get_preset("llama3-8b"), **sizes)


def _transformer_config(**kwargs):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(**transformer_config_kwargs(get_preset("llama3-8b"), **kwargs))


def test_llama_architecture_fields():
    config = _transformer_config()
    assert config.normalization == "RMSNorm" and config.layernorm_epsilon == 1e-5
    assert config.gated_linear_unit and config.activation_func is F.silu
    assert not config.add_bias_linear and not config.add_qkv_bias
    assert (config.num_attention_heads, config.num_query_groups, config.kv_channels) == (32, 8, 128)
    assert config.hidden_dropout == 0.0 and config.attention_dropout == 0.0
    assert config.params_dtype == torch.float32 and not config.bf16


def test_bf16_sets_dtypes():
    config = _transformer_config(bf16=True)
    assert config.bf16 and config.params_dtype == torch.bfloat16
    assert config.pipeline_dtype == torch.bfloat16


@pytest.mark.parametrize("recipe", ["delayed", "tensorwise", "mxfp8", "blockwise"])
@pytest.mark.parametrize("fmt", ["e4m3", "hybrid"])
def test_fp8_flags_translate(fmt, recipe):
    fp8 = Fp8Options(
        fp8_format=fmt, fp8_recipe=recipe, fp8_margin=1,
        fp8_amax_history_len=1024, fp8_amax_compute_algo="max",
    )  # fmt: skip
    config = _transformer_config(bf16=True, fp8=fp8)
    assert (config.fp8, config.fp8_recipe, config.fp8_margin) == (fmt, recipe, 1)
    assert (config.fp8_amax_history_len, config.fp8_amax_compute_algo) == (1024, "max")


def test_fp8_off_by_default():
    assert _transformer_config(fp8=Fp8Options()).fp8 is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Fp8Options(fp8_format="hybrid", fp8_amax_history_len=0), "--fp8-amax-history-len"),
    ],
)
def test_fp8_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        transformer_config_kwargs(get_preset("tiny"), fp8=options)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (RecomputeOptions(recompute_granularity="selective"), ("selective", None, None)),
        (
            RecomputeOptions(
                recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1
            ),
            ("full", "uniform", 1),
        ),
        (
            RecomputeOptions(
                recompute_granularity="full", recompute_method="block", recompute_num_layers=16
            ),
            ("full", "block", 16),
        ),
        (RecomputeOptions(), (None, None, None)),
    ],
)
def test_recompute_flags_translate(options, expected):
    config = _transformer_config(recompute=options, layout=_layout(pipeline_model_parallel_size=2))
    got = (config.recompute_granularity, config.recompute_method, config.recompute_num_layers)
    assert got == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RecomputeOptions(recompute_granularity="full", recompute_num_layers=1), "--recompute-method"),
        (RecomputeOptions(recompute_granularity="full", recompute_method="block"), "between 1"),
        (
            RecomputeOptions(
                recompute_granularity="full", recompute_method="block", recompute_num_layers=17
            ),
            "between 1 and the layers per pipeline stage \\(16\\)",
        ),
        (
            RecomputeOptions(recompute_granularity="selective", recompute_method="uniform"),
            "selective takes no",
        ),
        (RecomputeOptions(recompute_method="uniform"), "need --recompute-granularity"),
    ],
)
def test_recompute_bad_combinations(options, message):
    with pytest.raises(ValueError, match=message):
        transformer_config_kwargs(
            get_preset("llama3-8b"), recompute=options,
            layout=_layout(pipeline_model_parallel_size=2),
        )


def test_parallel_fields_and_interleaving_disables_batched_p2p():
    config = _transformer_config(layout=_layout(
        tensor_model_parallel_size=4,
        pipeline_model_parallel_size=4,
        virtual_pipeline_model_parallel_size=2,
    ))
    assert config.tensor_model_parallel_size == 4 and config.pipeline_model_parallel_size == 4
    assert config.virtual_pipeline_model_parallel_size == 2
    assert config.batch_p2p_comm is False
    assert _transformer_config(layout=_layout(pipeline_model_parallel_size=2)).batch_p2p_comm is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(pipeline_model_parallel_size=3), "do not split into PP=3"),
        (dict(pipeline_model_parallel_size=4, virtual_pipeline_model_parallel_size=3), "VPP=3"),
        (dict(tensor_model_parallel_size=16), "TP=16"),
        (dict(sequence_parallel=True), "--tensor-model-parallel-size > 1"),
    ],
)
def test_bad_parallel_layouts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transformer_config_kwargs(get_preset("llama3-8b"), layout=_layout(**kwargs))


def test_fused_kernels_follow_the_backend():
    plain = transformer_config_kwargs(get_preset("tiny"))
    fused = transformer_config_kwargs(get_preset("tiny"), fused_kernels=True)
    for key in ("bias_activation_fusion", "apply_rope_fusion", "gradient_accumulation_fusion"):
        assert plain[key] is False and fused[key] is True


@needs_no_te
def test_without_te_fp8_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="--fp8-format needs Transformer Engine"):
        build_transformer_config(get_preset("tiny"), fp8=Fp8Options(fp8_format="hybrid"),
                                 backends=choose_backends())
    with pytest.raises(ValueError, match="Transformer Engine was requested"):
        build_transformer_config(
            get_preset("tiny"), fp8=Fp8Options(fp8_format="hybrid"),
            backends=choose_backends(transformer_impl="transformer_engine"),
        )


@needs_no_te
def test_without_te_sequence_parallel_is_refused():
    with pytest.raises(ValueError, match="--sequence-parallel needs Transformer Engine"):
        build_transformer_config(get_preset("tiny"), backends=choose_backends(),
                                 layout=parallel_layout_for(get_preset("tiny"),
                                                            tensor_model_parallel_size=2,
                                                            sequence_parallel=True))


@needs_no_te
def test_cpu_build_uses_cpu_initialization_and_no_fusions():
    config = build_transformer_config(get_preset("tiny"), backends=choose_backends())
    assert config.use_cpu_initialization is (not torch.cuda.is_available())
    assert not config.apply_rope_fusion and not config.gradient_accumulation_fusion


@needs_no_te
def test_layer_spec_by_capability_is_local_without_te():
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    from megatron_telecom.models.attention import SDPADotProductAttention

    config = build_transformer_config(get_preset("tiny"), backends=choose_backends())
    spec = get_layer_spec(config, choose_backends())
    assert spec.submodules.input_layernorm is WrappedTorchNorm
    assert spec.submodules.self_attention.submodules.core_attention is SDPADotProductAttention
    local = get_layer_spec(config, choose_backends(transformer_impl="local"))
    assert local.submodules.self_attention.submodules.core_attention is SDPADotProductAttention
    with pytest.raises(ValueError, match="Transformer Engine was requested"):
        get_layer_spec(config, choose_backends(transformer_impl="transformer_engine"))


def test_local_spec_refuses_fp8_config():
    config = _transformer_config(fp8=Fp8Options(fp8_format="hybrid"))
    with pytest.raises(ValueError, match="need the Transformer Engine layer spec"):
        get_layer_spec(config, choose_backends(transformer_impl="local"))


def test_options_are_frozen_keyword_only():
    with pytest.raises(TypeError):
        Fp8Options("hybrid")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RecomputeOptions().recompute_granularity = "full"  # type: ignore[misc]
