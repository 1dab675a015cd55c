"""Presets carry the published architectures; vocab padding and FLOPs follow Megatron-LM."""

from __future__ import annotations

import pytest

from megatron_telecom.models.flops import num_floating_point_operations
from megatron_telecom.models.presets import PRESETS, ModelPreset, get_preset
from megatron_telecom.models.transformer_config import pad_vocab_size, transformer_config_kwargs

# (layers, hidden, ffn, heads, kv groups, vocab, seq, max positions, rotary base, rope scaling)
PUBLISHED = {
    "llama2-7b": (32, 4096, 11008, 32, 32, 32000, 4096, 4096, 10000, False),
    "llama3-8b": (32, 4096, 14336, 32, 8, 128256, 8192, 8192, 500000, False),
    "llama3.1-8b": (32, 4096, 14336, 32, 8, 128256, 8192, 131072, 500000, True),
    "mistral-7b-v0.3": (32, 4096, 14336, 32, 8, 32768, 32768, 32768, 1000000, False),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_real_presets_match_published_configs(name):
    preset = get_preset(name)
    assert (
        preset.num_layers,
        preset.hidden_size,
        preset.ffn_hidden_size,
        preset.num_attention_heads,
        preset.num_query_groups,
        preset.vocab_size,
        preset.seq_length,
        preset.max_position_embeddings,
        preset.rotary_base,
        preset.rope_scaling,
    ) == PUBLISHED[name]
    assert preset.norm_epsilon == 1e-5
    assert preset.kv_channels == 128
    assert preset.untie_embeddings_and_output_weights


def test_llama31_rope_scaling_factor():
    assert get_preset("llama3.1-8b").rope_scaling_factor == 8.0


@pytest.mark.parametrize("name", ["tiny", "tiny-llama3", "tiny-mistral", "small"])
def test_cpu_presets_are_small_and_gqa(name):
    preset = get_preset(name)
    assert preset.hidden_size <= 512 and preset.num_layers <= 4
    assert preset.num_attention_heads > preset.num_query_groups  # exercises GQA


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="llama3-8b"):
        get_preset("llama4")


def test_preset_validates_shapes():
    fields = dict(
        name="bad", num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
        num_query_groups=3, vocab_size=100, seq_length=16, max_position_embeddings=16,
        rotary_base=10000,
    )  # fmt: skip
    with pytest.raises(ValueError, match="num_query_groups"):
        ModelPreset(**fields)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ModelPreset(**{**fields, "num_query_groups": 2, "seq_length": 32})


@pytest.mark.parametrize(
    ("vocab", "divisible_by", "tp", "padded"),
    [
        (32000, 128, 1, 32000),
        (32000, 128, 8, 32768),
        (32768, 128, 4, 32768),
        (128256, 128, 1, 128256),
        (128256, 128, 3, 128256),
        (128256, 128, 8, 129024),
        (50257, 128, 1, 50304),
        (1, 128, 2, 256),
        (100, 1, 1, 100),
    ],
)
def test_pad_vocab_size(vocab, divisible_by, tp, padded):
    result = pad_vocab_size(
        vocab, make_vocab_size_divisible_by=divisible_by, tensor_model_parallel_size=tp
    )
    assert result == padded


def test_pad_vocab_size_rejects_nonsense():
    with pytest.raises(ValueError, match="make-vocab-size-divisible-by"):
        pad_vocab_size(32000, make_vocab_size_divisible_by=0)


def _config(name: str):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(**transformer_config_kwargs(get_preset(name)))


# Hand-computed (per token: 6 * [L * (h(q+2kv) + q*s + q*h + 3*h*ffn) + h*V]), and equal to
# Megatron-LM core_v0.16.1's num_floating_point_operations for the same arguments.
@pytest.mark.parametrize(
    ("name", "seq", "vocab", "flops_per_sequence"),
    [
        ("llama2-7b", 4096, 32000, 175_569_673_125_888),
        ("llama3-8b", 8192, 128256, 421_645_529_382_912),
        ("mistral-7b-v0.3", 32768, 32768, 2_243_003_720_663_040),
        ("tiny", 128, 32000, 1_656_225_792),
    ],
)
def test_flops_match_hand_computed(name, seq, vocab, flops_per_sequence):
    config = _config(name)
    for batch in (1, 4):
        flops = num_floating_point_operations(
            config, batch_size=batch, seq_length=seq, padded_vocab_size=vocab
        )
        assert flops == batch * flops_per_sequence


def test_flops_tiny_by_hand():
    # tiny: L=2, h=64, q=64, kv=32, ffn=176, seq 128, vocab 512
    attention = 64 * (64 + 64) + 64 * 128 + 64 * 64
    mlp = 3 * 64 * 176
    expected = 2 * 128 * 6 * (2 * (attention + mlp) + 64 * 512)
    flops = num_floating_point_operations(
        _config("tiny"), batch_size=2, seq_length=128, padded_vocab_size=512
    )
    assert flops == expected


def test_flops_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        num_floating_point_operations(_config("tiny"), batch_size=0, seq_length=8, padded_vocab_size=8)


def test_every_preset_builds_a_transformer_config():
    for name in PRESETS:
        config = _config(name)
        assert config.num_query_groups == get_preset(name).num_query_groups
