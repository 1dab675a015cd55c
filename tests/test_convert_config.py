"""HF config -> model config (both transformers layouts), refusals, tensor layouts, HF file checks.

In-process and megatron-free: the parsing, the Q/K/V and gate/up layouts and the safetensors
reader/writer are checked directly against transformers' and safetensors' own files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from megatron_telecom.atomic import staged_folder
from megatron_telecom.convert import mapping
from megatron_telecom.convert.hf_config import hf_config_from_preset, preset_from_hf_config
from megatron_telecom.convert.hf_io import HFWeights, write_sharded
from megatron_telecom.models.presets import get_preset

LLAMA31_T4 = {  # transformers 4 layout of Llama-3.1-8B's config.json
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
}


def test_llama31_config_maps_to_the_preset_in_both_layouts():
    t5 = {k: v for k, v in LLAMA31_T4.items() if k not in ("rope_theta", "rope_scaling")}
    t5["rope_parameters"] = {**LLAMA31_T4["rope_scaling"], "rope_theta": 500000.0}
    preset = get_preset("llama3.1-8b")
    for config in (LLAMA31_T4, t5):
        converted = preset_from_hf_config(config, name="Llama-3.1-8B")
        assert converted.rotary_base == 500000.0 and converted.rope_scaling
        for field in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                      "num_query_groups", "vocab_size", "max_position_embeddings",
                      "rope_scaling_factor", "untie_embeddings_and_output_weights"):
            assert getattr(converted, field) == getattr(preset, field), field


def test_llama3_scaling_parameters_all_four_kept_and_written_back():
    config = json.loads(json.dumps(LLAMA31_T4))
    config["rope_scaling"].update(factor=32.0, low_freq_factor=2.0, high_freq_factor=8.0,
                                  original_max_position_embeddings=4096)
    preset = preset_from_hf_config(config, name="x")
    assert (preset.rope_scaling_factor, preset.rope_scaling_low_freq_factor,
            preset.rope_scaling_high_freq_factor,
            preset.rope_scaling_original_max_position_embeddings) == (32.0, 2.0, 8.0, 4096)
    back = hf_config_from_preset(preset, base=config)
    assert back["rope_parameters"] == {"rope_type": "llama3", "rope_theta": 500000.0,
                                       "factor": 32.0, "low_freq_factor": 2.0,
                                       "high_freq_factor": 8.0,
                                       "original_max_position_embeddings": 4096}
    assert back["bos_token_id"] == 128000
    assert preset_from_hf_config(back, name="x") == preset


@pytest.mark.parametrize(("change", "message"), [
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "attention_bias/mlp_bias"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"num_local_experts": 8}, "mixture-of-experts"),
    ({"sliding_window": 4096}, "sliding_window 4096 < max_position_embeddings 131072"),
    ({"architectures": ["GPT2LMHeadModel"]}, "architecture ['GPT2LMHeadModel'] is not supported"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "RoPE type 'yarn'"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "lacks low_freq_factor"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
])
def test_unsupported_configs_are_refused(change, message):
    with pytest.raises(ValueError, match="config.json: ") as err:
        preset_from_hf_config({**LLAMA31_T4, **change}, name="m")
    assert message in str(err.value)


def test_qkv_and_fc1_layouts_follow_megatron_and_invert_exactly():
    preset = get_preset("tiny")  # 4 heads, 2 groups, head dim 16
    d, h = preset.kv_channels, preset.hidden_size
    q, k, v = torch.randn(4 * d, h), torch.randn(2 * d, h), torch.randn(2 * d, h)
    qkv = mapping.merge("decoder.layers.0.self_attention.linear_qkv.weight", [q, k, v], preset)
    # group 0 = [q heads 0, 1; k0; v0], group 1 = [q heads 2, 3; k1; v1]
    assert torch.equal(qkv[: 2 * d], q[: 2 * d]) and torch.equal(qkv[2 * d: 3 * d], k[:d])
    assert torch.equal(qkv[3 * d: 4 * d], v[:d]) and torch.equal(qkv[4 * d: 6 * d], q[2 * d:])
    back = mapping.split("decoder.layers.0.self_attention.linear_qkv.weight", qkv, preset)
    assert all(torch.equal(a, b) for a, b in zip(back, [q, k, v], strict=True))
    gate, up = torch.randn(176, h), torch.randn(176, h)
    fc1 = mapping.merge("decoder.layers.0.mlp.linear_fc1.weight", [gate, up], preset)
    assert torch.equal(fc1[:176], gate)
    assert all(torch.equal(a, b) for a, b in zip(
        mapping.split("decoder.layers.0.mlp.linear_fc1.weight", fc1, preset), [gate, up],
        strict=True))


def test_streamed_shards_load_with_safetensors_and_are_bitwise(tmp_path):
    tensors = {f"t{i}": torch.randn(64, 33).to(dtype)
               for i, dtype in enumerate((torch.float32, torch.bfloat16, torch.float16))}
    specs = [(name, tuple(t.shape), t.dtype) for name, t in tensors.items()]
    write_sharded(tmp_path, specs, tensors.__getitem__, max_shard_bytes=64 * 33 * 4)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    loaded = {}
    for shard in set(index["weight_map"].values()):
        loaded.update(load_file(tmp_path / shard))
    assert all(torch.equal(loaded[k].view(torch.uint8), tensors[k].view(torch.uint8))
               for k in tensors)
    reader = HFWeights(tmp_path)
    assert torch.equal(reader.get("t1").float(), tensors["t1"].float())


def _two_shards(folder: Path) -> None:
    folder.mkdir()
    save_file({"a": torch.zeros(1000)}, folder / "s1.safetensors")
    save_file({"b": torch.ones(1000)}, folder / "s2.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: (f / "s2.safetensors").unlink(), "shard .*s2.safetensors is missing"),
    (lambda f: (f / "s2.safetensors").write_bytes((f / "s2.safetensors").read_bytes()[:-100]),
     "s2.safetensors is (unreadable or )?truncated"),
    (lambda f: (f / "model.safetensors.index.json").write_text("{\"weight_map\": [1"),
     "index.json is corrupt"),
    (lambda f: (f / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "s2.safetensors"}})), "the index is corrupt"),
])
def test_damaged_weights_are_refused_before_reading(tmp_path, damage, message):
    folder = tmp_path / "m"
    _two_shards(folder)
    HFWeights(folder)  # intact: fine
    damage(folder)
    with pytest.raises(ValueError, match=message):
        HFWeights(folder)


def test_pickle_weights_are_not_read(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle files are not read"):
        HFWeights(tmp_path)


def test_staged_folder_leaves_nothing_on_error_and_refuses_existing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_folder(target) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(target) as tmp:
        (tmp / "whole").write_text("x")
    assert (target / "whole").is_file()
    with pytest.raises(ValueError, match="already exists and is not empty"), staged_folder(target):
        pass


LLAMA3_8B = {**{k: v for k, v in LLAMA31_T4.items() if k != "rope_scaling"},
             "max_position_embeddings": 8192}
MISTRAL_7B_V03 = {
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 32768,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
    "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu",
}


@pytest.mark.parametrize(("config_file", "hf_config"), [
    ("llama3_8b_telecom.yaml", LLAMA3_8B), ("mistral_7b_telecom.yaml", MISTRAL_7B_V03)])
def test_8b_example_configs_load_their_converted_base_models(config_file, hf_config):
    from megatron_telecom.models.transformer_config import parallel_layout_for
    from megatron_telecom.training.arguments import parse_config
    from megatron_telecom.training.builders import resolve_preset

    cfg = parse_config(["--config", str(Path(__file__).parents[1] / "examples" / "configs" /
                                        config_file)])
    assert cfg.checkpoint.load and cfg.checkpoint.finetune
    converted = preset_from_hf_config(hf_config, name="base")
    assert resolve_preset(cfg.model, converted) == converted  # `model:` agrees: adopted
    parallel_layout_for(  # the recipe's TP/PP split the converted model
        converted, tensor_model_parallel_size=cfg.parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.parallel.pipeline_model_parallel_size)
